"""The attendance firmware on the host and on QEMU RT-Thread: the nncase voc20 detector (its 'person' boxes are the
faces here) and a random-weight recognizer, both rendered with the attendance app. What the firmware enrolls and
names equals the Python twin (deploy/attendance) on the same frames; the database survives a restart, refuses bad
names, and an interrupted save (a power cut at every write of it) leaves the previous database in use. The recognizer
carries a non-zero embedding centre, so the twin's centring (float32, between two L2 norms) is checked against the C
firmware's bit for bit."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from deploy.attendance.face_db import read_region, region_bytes, template_units
from deploy.attendance.matching import decide
from deploy.attendance.recognize import FaceReader, largest
from deploy.attendance.render import AttendanceApp
from deploy.attendance.stages import render_pair
from deploy.firmware.build import build_host
from deploy.firmware.camera_frames import read_frame, write_ppm_frames
from deploy.firmware.model_spec import model_spec
from deploy.firmware.reference_model import voc20_report
from deploy.firmware.render import COMPONENT, model_folder
from deploy.firmware.run import run_host
from hardware.k210 import FLASH_BYTES
from pipeline.errors import PipelineError
from tests.conftest import shared_path
from tests.kpu_models import embedder_kmodel

DB_ADDRESS, DET_ADDRESS, REC_ADDRESS = 0xF00000, 0x300000, 0x900000
CAPACITY = 8
CENTRE = (0.5 * np.random.default_rng(12).standard_normal(128) / np.sqrt(128)).astype(np.float32)
pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed (run `invoke setup`)")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("attendance")


@pytest.fixture(scope="module")
def specs(workdir):
    detector = shared_path("kmodels", "voc20_yolov2_v3.kmodel")
    rec_kmodel, rec_report = embedder_kmodel(workdir / "rec", centre=CENTRE)
    return {"detector": model_spec(detector, voc20_report(), Path("voc20_report"), score_threshold=0.5,
                                   nms_iou=0.3, max_candidates=64),
            "recognizer": model_spec(rec_kmodel, rec_report, workdir / "rec" / "compile_report.json",
                                     score_threshold=0.5, nms_iou=0.3, max_candidates=64)}


@pytest.fixture(scope="module")
def app(specs) -> AttendanceApp:
    return AttendanceApp(detector="voc20", recognizer="rec", embedding_size=specs["recognizer"].embedder.embedding_size,
                         max_faces=3, enroll_frames=2, threshold_permyriad=5000, capacity=CAPACITY,
                         db_address=DB_ADDRESS, test_hooks=True)


@pytest.fixture(scope="module")
def folders(specs, app, workdir) -> dict[str, Path]:
    folders = {role: workdir / "rendered" / role for role in ("detector", "recognizer", "app")}
    render_pair(specs, app, {"detector": DET_ADDRESS, "recognizer": REC_ADDRESS}, "flash", folders)
    return folders


@pytest.fixture(scope="module")
def program(folders, workdir) -> Path:
    extra = (model_folder(folders["recognizer"], "rec"), folders["app"] / COMPONENT / "attendance")
    return build_host(folders["detector"], workdir / "host", extra_dirs=extra, command="face_recognize").program


def people_photos(count: int) -> dict[str, list[Path]]:
    """The first `count` classroom train photos of each of the first two people."""
    root = shared_path("classroom", "train")
    found: dict[str, list[Path]] = {}
    for xml in sorted((root / "annotations").glob("*.xml")):
        name = ET.parse(xml).getroot().find("object/name").text
        if len(found) < 2 or name in found:
            found.setdefault(name, [])
            if len(found[name]) < count:
                found[name].append(root / "images" / ET.parse(xml).getroot().find("filename").text)
    return found


@pytest.fixture(scope="module")
def frames(workdir) -> tuple[list[Path], list[Path], list[str]]:
    """Six camera frames: two photos of person A, two of B (the enrollments), then one more of each (the session)."""
    photos = people_photos(3)
    (a, pa), (b, pb) = photos.items()
    sources = [pa[0], pa[1], pb[0], pb[1], pa[2], pb[2]]
    return write_ppm_frames(sources, workdir / "frames"), sources, [a, b]


def erased_flash(path: Path) -> Path:
    path.write_bytes(b"\xff" * FLASH_BYTES)
    return path


def flash_files(specs) -> dict[int, Path]:
    return {DET_ADDRESS: specs["detector"].kmodel, REC_ADDRESS: specs["recognizer"].kmodel}


def database(flash: Path, app: AttendanceApp):
    data = flash.read_bytes()[DB_ADDRESS:DB_ADDRESS + region_bytes(app.embedding_size, CAPACITY)]
    return read_region(data, embedding_size=app.embedding_size, capacity=CAPACITY)


def host(program: Path, specs, frames: list[Path], flash: Path, *commands: str) -> subprocess.CompletedProcess:
    cmd = [str(program), "--storage", str(flash)]
    for offset, path in flash_files(specs).items():
        cmd += ["--flash-file", hex(offset), str(path)]
    for line in commands:
        cmd += ["--command", line]
    return subprocess.run(cmd + [str(f) for f in frames], capture_output=True, text=True, timeout=300)


def test_host_enrolls_and_names_faces_as_the_python_twin_decides(program, specs, app, frames, workdir):
    ppms, sources, (a, b) = frames
    flash = erased_flash(workdir / "flash_twin.img")
    result = run_host(program, ppms, flash_files=flash_files(specs), storage=flash,
                      commands=[f"face_enroll {a}", f"face_enroll {b} 2", "face_list", "face_recognize"])
    enrolled = [r for r in result.records if "enrolled" in r]
    assert [r["enrolled"] for r in enrolled] == [a, b]
    assert [r["person"] for r in result.records if "person" in r] == [a, b]

    reader = FaceReader(specs["detector"], specs["recognizer"], app.max_faces)
    assert np.array_equal(np.asarray(specs["recognizer"].embedder.centre, np.float32), CENTRE)
    plain = replace(specs["recognizer"], embedder=replace(specs["recognizer"].embedder, centre=None))
    face = largest(reader.faces(read_frame(sources[0])))
    uncentred = largest(FaceReader(specs["detector"], plain, app.max_faces).faces(read_frame(sources[0])))
    assert face.crop == uncentred.crop and not np.array_equal(face.units, uncentred.units)  # the centre matters
    templates = []
    for photos in (sources[0:2], sources[2:4]):
        units = [largest(reader.faces(read_frame(p))).units for p in photos]
        templates.append(template_units(np.stack(units)))
    db, slots = database(flash, app)
    assert [r.name for r in db.records] == [a, b]
    for record, template in zip(db.records, templates, strict=True):
        assert np.array_equal(record.template, template)  # the board's template is the host enrollment's
    assert [s.state for s in slots] == ["valid", "valid"] and db.sequence == 2

    assert [f.frame for f in result.frames] == [4, 5]
    for frame, source in zip(result.frames, sources[4:], strict=True):
        faces = reader.faces(read_frame(source))
        assert len(frame.faces) == len(faces) >= 1
        for printed, face in zip(frame.faces, faces, strict=True):
            decision = decide(face.units, [a, b], templates, app.threshold_permyriad)
            assert printed["name"] == decision.name
            assert printed["similarity"] == pytest.approx(decision.similarity, abs=1e-4)
            assert printed["crop"] == list(face.crop)


def test_the_database_survives_a_restart_and_refuses_bad_requests(program, specs, app, frames, workdir):
    ppms, _, (a, b) = frames
    flash = erased_flash(workdir / "flash_restart.img")
    assert host(program, specs, ppms, flash, f"face_enroll {a} 2", f"face_enroll {b} 2").returncode == 0
    again = host(program, specs, ppms, flash, "face_list", f"face_delete {a}", "face_threshold 0.25")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f'"person":"{a}"' in again.stdout and "sequence 2" in again.stdout  # the boot line of the reload
    third = host(program, specs, ppms, flash, "face_list")
    assert f'"person":"{a}"' not in third.stdout and f'"person":"{b}"' in third.stdout
    assert '"threshold":0.2500' in third.stdout
    bad = host(program, specs, ppms, flash, f"face_enroll {b}", "face_enroll ../etc", "face_delete nobody",
               "face_threshold 1.5", f"face_enroll {'x' * 40}")
    assert bad.returncode != 0
    assert f"'{b}' is already enrolled" in bad.stdout
    assert bad.stdout.count("bad name") == 2
    assert "'nobody' is not enrolled" in bad.stdout
    assert "not a similarity between 0 and 1" in bad.stdout
    assert database(flash, app)[0].sequence == 4  # none of the refused requests wrote anything


def test_a_power_cut_at_any_write_of_a_save_keeps_the_previous_database(program, specs, app, frames, workdir):
    ppms, _, (a, b) = frames
    flash = erased_flash(workdir / "flash_cut.img")
    assert host(program, specs, ppms, flash, f"face_enroll {a} 2").returncode == 0
    before = flash.read_bytes()
    seen = []  # the names in use after a cut following each write of the save
    while True:
        flash.write_bytes(before)
        cut = host(program, specs, ppms[2:], flash, f"face_db_fault {len(seen) + 1}", f"face_enroll {b} 2")
        if cut.returncode == 0:
            break  # the hook allowed more writes than the save makes: it finished
        assert cut.returncode == 3 and "power cut (test hook)" in cut.stdout, cut.stdout + cut.stderr
        seen.append([r.name for r in database(flash, app)[0].records])
    assert len(seen) >= 3  # erase, records, header: every stage was cut
    # every cut before the header's write leaves the previous database; only a cut after the last write (the
    # header's) may show the new one
    assert all(names == [a] for names in seen[:-1]) and seen[-1] in ([a], [a, b])
    assert [r.name for r in database(flash, app)[0].records] == [a, b]


def test_a_flipped_byte_is_caught_by_the_crc_at_boot(program, specs, app, frames, workdir):
    ppms, _, (a, b) = frames
    flash = erased_flash(workdir / "flash_flip.img")
    assert host(program, specs, ppms, flash, f"face_enroll {a} 2", f"face_enroll {b} 2").returncode == 0
    db, slots = database(flash, app)
    used = next(s.index for s in slots if s.sequence == db.sequence)
    data = bytearray(flash.read_bytes())
    slot = DB_ADDRESS + used * (region_bytes(app.embedding_size, CAPACITY) // 2)
    data[slot + 200] ^= 0x01  # inside the first record
    flash.write_bytes(bytes(data))
    booted = host(program, specs, ppms, flash, "face_list")
    assert "CRC" in booted.stdout
    assert f'"person":"{b}"' not in booted.stdout and f'"person":"{a}"' in booted.stdout  # the older slot


@pytest.fixture(scope="module")
def qemu_image(folders, app, workdir) -> Path:
    """The two models and the attendance app built into real RT-Thread's qemu-virt64-riscv BSP."""
    from deploy.firmware.rtthread_build import build_board
    from tests.conftest import rtthread_root

    rtthread_root()
    if shutil.which("riscv64-unknown-elf-gcc") is None or shutil.which("qemu-system-riscv64") is None:
        pytest.skip("RISC-V gcc / QEMU not installed (run `invoke setup`)")
    build = build_board("qemu", [folders["detector"], folders["recognizer"]], workdir / "qemu", workdir / "qemu_bsp",
                        apps=(folders["app"] / COMPONENT / "attendance",), app_commands=app.commands())
    return build.image


def flash_with_models(path: Path, specs) -> Path:
    data = bytearray(b"\xff" * FLASH_BYTES)
    for offset, kmodel in flash_files(specs).items():
        blob = kmodel.read_bytes()
        data[offset:offset + len(blob)] = blob
    path.write_bytes(bytes(data))
    return path


def test_qemu_rtthread_keeps_enrollments_across_a_reboot_and_a_power_cut(qemu_image, specs, app, frames, workdir):
    from deploy.firmware.console import parse_console
    from deploy.firmware.run import qemu_console

    ppms, sources, (a, b) = frames
    flash = flash_with_models(workdir / "qemu_flash.img", specs)
    with qemu_console(qemu_image, ppms, flash_image=flash, storage=flash) as console:
        assert "face_db: empty" in console.transcript
        enrolled = parse_console(console.run(f"face_enroll {a} 2", 600), source="qemu").records
        assert enrolled[0]["enrolled"] == a and enrolled[0]["sequence"] == 1
        console.run("face_db_fault 2", 30)
        console.run_until(f"face_enroll {b} 2", "power cut (test hook)", 600)
    # QEMU was killed in the middle of the save; the flash file holds what was written until then
    db, slots = database(flash, app)
    assert [r.name for r in db.records] == [a] and [s.state for s in slots].count("valid") == 1
    with qemu_console(qemu_image, ppms, flash_image=flash, storage=flash) as console:
        assert "not used: save interrupted" in console.transcript  # the boot says what the cut left
        listed = parse_console(console.run("face_list", 60), source="qemu").records
        assert [r["person"] for r in listed if "person" in r] == [a]
        enrolled = parse_console(console.run(f"face_enroll {b} 2", 600), source="qemu").records
        assert enrolled[0]["enrolled"] == b
        named = parse_console(console.run("face_recognize", 600), source="qemu")
    reader = FaceReader(specs["detector"], specs["recognizer"], app.max_faces)
    db, _ = database(flash, app)
    assert [r.name for r in db.records] == [a, b]
    assert [f.frame for f in named.frames] == [2, 3, 4, 5]  # after the reboot, enrollment read frames 0 and 1
    for frame in named.frames:
        faces = reader.faces(read_frame(sources[frame.frame]))
        assert [f["name"] for f in frame.faces] == [
            decide(face.units, [a, b], [r.template for r in db.records], app.threshold_permyriad).name
            for face in faces]
    with qemu_console(qemu_image, ppms, flash_image=flash, storage=flash) as console:
        deleted = parse_console(console.run(f"face_delete {a}", 60), source="qemu").records
        assert deleted[0]["deleted"] == a and deleted[0]["people"] == 1
    with qemu_console(qemu_image, ppms, flash_image=flash, storage=flash) as console:  # a deletion survives a reboot
        listed = parse_console(console.run("face_list", 60), source="qemu").records
        assert [r["person"] for r in listed if "person" in r] == [b]


def test_the_attendance_app_builds_into_the_real_bsp_k210(specs, app, workdir):
    """Both models embedded and the app in bsp/k210 with the K210 SDK: the image holds every attendance command,
    both registrations and both kmodels byte for byte (the SPI-flash store compiled against the real SDK)."""
    from deploy.firmware.rtthread_build import build_board
    from deploy.firmware.rtthread_tree import find_toolchain
    from tests.conftest import rtthread_root

    rtthread_root()
    try:
        find_toolchain("riscv-none-embed-")
    except PipelineError as exc:
        pytest.skip(f"no RISC-V toolchain: {exc}")
    folders = {role: workdir / "k210_rendered" / role for role in ("detector", "recognizer", "app")}
    render_pair(specs, app, {"detector": DET_ADDRESS, "recognizer": REC_ADDRESS}, "embedded", folders)
    build = build_board("k210", [folders["detector"], folders["recognizer"]], workdir / "k210", workdir / "k210_bsp",
                        apps=(folders["app"] / COMPONENT / "attendance",), app_commands=app.commands(),
                        embedded_kmodels={"voc20": specs["detector"].kmodel, "rec": specs["recognizer"].kmodel})
    assert set(build.report.models) == {"voc20", "rec"}
    assert all(model["kmodel"]["alignment_ok"] for model in build.report.models.values())
    assert build.report.components.get("face_ai", 0) > 0
