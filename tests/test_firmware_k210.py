"""The k210 board build on the real tree (../shared/rtthread: RT-Thread 5.0.1 bsp/k210 + packages/K210-SDK-latest):
scons links an image that holds each model's msh command, registration and kmodel; a detector, a recognizer
(embedder) and a detector read from flash build side by side; the tree is never written. Every missing piece
(tree, version, BSP, SDK package, toolchain) is one clear error."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from deploy.firmware.model_spec import model_spec
from deploy.firmware.reference_model import voc20_report
from deploy.firmware.render import RenderOptions, render_firmware
from deploy.firmware.rtthread_build import build_board, picolibc_rtconfig
from deploy.firmware.rtthread_tree import find_bsp, find_k210_sdk, find_rtt_root, find_toolchain
from pipeline.errors import PipelineError
from tests.conftest import rtthread_root, shared_path
from tests.kpu_models import embedder_kmodel

needs_build_tools = pytest.mark.skipif(shutil.which("scons") is None or shutil.which("riscv64-unknown-elf-gcc") is None,
                                       reason="scons / riscv64-unknown-elf-gcc not installed (invoke setup)")


def render(name: str, folder: Path, storage: str = "embedded") -> Path:
    kmodel = shared_path("kmodels", "voc20_yolov2_v3.kmodel")
    spec = model_spec(kmodel, voc20_report(), Path("r.json"), score_threshold=0.5, nms_iou=0.3, max_candidates=64)
    return render_firmware(spec, RenderOptions(name=name, storage=storage), folder).folder


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(str(path).encode() + path.read_bytes())
    return digest.hexdigest()


def render_recognizer(name: str, folder: Path) -> tuple[Path, Path]:
    """A random-weight embedder compiled here, rendered with its kmodel in the image; (rendered folder, kmodel)."""
    kmodel, report = embedder_kmodel(folder / "model")
    spec = model_spec(kmodel, report, kmodel.parent / "compile_report.json", score_threshold=0.5, nms_iou=0.3,
                      max_candidates=8)
    return render_firmware(spec, RenderOptions(name=name, storage="embedded"), folder / "rendered").folder, kmodel


@pytest.mark.slow
@needs_build_tools
def test_bsp_k210_links_a_detector_a_recognizer_and_a_flash_model(tmp_path):
    root = rtthread_root()
    bsp = root / "bsp" / "k210"
    before = tree_digest(bsp)
    kmodel = shared_path("kmodels", "voc20_yolov2_v3.kmodel")
    detector = render("voc20", tmp_path / "r1")
    recognizer, rec_kmodel = render_recognizer("faceid", tmp_path / "r2")
    third = render("faces2", tmp_path / "r3", storage="flash")
    build = build_board("k210", [detector, recognizer, third], tmp_path / "out", tmp_path / "bsp",
                        embedded_kmodels={"voc20": kmodel, "faceid": rec_kmodel})
    report = build.report
    assert set(report.models) == {"voc20", "faceid", "faces2"}
    assert {name: found["msh"] for name, found in report.models.items()} == {
        "voc20": "voc20_detect", "faceid": "faceid_embed", "faces2": "faces2_detect"}
    for name, path in (("voc20", kmodel), ("faceid", rec_kmodel)):
        assert report.models[name]["kmodel"]["bytes"] == path.stat().st_size  # byte-compared with the file
        assert report.models[name]["kmodel"]["alignment_ok"]
    assert "kmodel" not in report.models["faces2"]  # read from flash at run time
    print("k210 image:", json.dumps({"text": report.text, "data": report.data, "bss": report.bss,
                                     "bin": (build.folder / "rtthread.bin").stat().st_size,
                                     "face_ai": report.components["face_ai"]}))
    assert report.components["face_ai"] > 0 and report.components["face_port"] > 0
    assert 0 < report.text + report.data + report.bss < 6 * 1024 * 1024
    assert report.text > kmodel.stat().st_size
    assert (build.folder / "rtthread.bin").stat().st_size > kmodel.stat().st_size
    rtconfig = (tmp_path / "bsp" / "rtconfig.h").read_text()
    assert "#define RT_AI_USE_K210" in rtconfig and "#define BSP_USING_CAMERA" in rtconfig
    assert 'source "face_ai/Kconfig"' in (tmp_path / "bsp" / "Kconfig").read_text()
    symbols = (tmp_path / "bsp" / "rtthread.map").read_text()
    for needed in ("backend_k210_kpu", "k210_camera", "voc20_kmodel", "faceid_kmodel", "face_crop",
                   "embedding_normalise", "rt_ai_faces2_register"):
        assert needed in symbols
    assert tree_digest(bsp) == before  # the tree itself was not written

    # a rebuild with the second model gone leaves no stale folder behind
    again = build_board("k210", [detector], tmp_path / "out", tmp_path / "bsp", embedded_kmodels={"voc20": kmodel})
    assert set(again.report.models) == {"voc20"}
    assert not (tmp_path / "bsp" / "face_ai" / "faces2").exists() and not (tmp_path / "bsp" / "face_ai" /
                                                                            "faceid").exists()


@needs_build_tools
def test_two_models_of_one_name_are_refused(tmp_path):
    rtthread_root()
    first, second = render("voc20", tmp_path / "r1"), render("voc20", tmp_path / "r2")
    with pytest.raises(PipelineError, match="two models named 'voc20'"):
        build_board("k210", [first, second], tmp_path / "out", tmp_path / "bsp")
    assert not (tmp_path / "out").exists()


def test_the_real_tree_is_found_and_checked():
    root = find_rtt_root(rtthread_root())
    assert find_k210_sdk(find_bsp(root, "k210")).name == "K210-SDK-latest"


def make_tree(root: Path, version: tuple[int, int, int] = (5, 0, 1), *, bsp: bool = True,
              sdk: str | None = "K210-SDK-latest") -> Path:
    (root / "include").mkdir(parents=True)
    major, minor, patch = version
    (root / "include" / "rtdef.h").write_text(f"#define RT_VERSION_MAJOR {major}\n#define RT_VERSION_MINOR {minor}\n"
                                              f"#define RT_VERSION_PATCH {patch}\n")
    if bsp:
        folder = root / "bsp" / "k210"
        folder.mkdir(parents=True)
        for name in ("SConstruct", "rtconfig.py", "rtconfig.h"):
            (folder / name).write_text("")
        if sdk:
            (folder / "packages" / sdk).mkdir(parents=True)
            (folder / "packages" / sdk / "SConscript").write_text("")
    return root


def test_missing_or_wrong_pieces_each_get_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("RTT_ROOT", raising=False)
    with pytest.raises(PipelineError, match=r"not an RT-Thread tree.*include/rtdef.h"):
        find_rtt_root(tmp_path / "nowhere")
    old = make_tree(tmp_path / "old", (4, 0, 3))
    with pytest.raises(PipelineError, match=r"RT-Thread 4\.0\.3 is too old.*4\.1\.1 or newer"):
        find_rtt_root(old)
    no_bsp = make_tree(tmp_path / "nobsp", bsp=False)
    with pytest.raises(PipelineError, match="no bsp/k210"):
        find_bsp(find_rtt_root(no_bsp), "k210")
    legacy = make_tree(tmp_path / "legacy", sdk="kendryte-sdk-v0.5.7")
    with pytest.raises(PipelineError, match="only the legacy package kendryte-sdk-v0.5.7.*pkgs --update"):
        find_k210_sdk(find_bsp(legacy, "k210"))
    none = make_tree(tmp_path / "nosdk", sdk=None)
    with pytest.raises(PipelineError, match="no K210 SDK package.*K210-SDK-latest"):
        find_k210_sdk(find_bsp(none, "k210"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.delenv("RTT_EXEC_PATH", raising=False)
    monkeypatch.setattr("deploy.firmware.rtthread_tree.DEBIAN_PICOLIBC_SPECS", tmp_path / "none.specs")
    with pytest.raises(PipelineError, match="riscv-none-embed-gcc.*gcc-riscv64-unknown-elf"):
        find_toolchain("riscv-none-embed-")


def test_an_xpack_toolchain_is_used_as_the_bsp_expects(tmp_path, monkeypatch):
    gcc = tmp_path / "xpack" / "bin" / "riscv-none-embed-gcc"
    gcc.parent.mkdir(parents=True)
    gcc.write_text("#!/bin/sh\n")
    gcc.chmod(0o755)
    monkeypatch.setenv("RTT_EXEC_PATH", str(gcc.parent))
    chosen = find_toolchain("riscv-none-embed-")
    assert chosen.exec_path == gcc.parent and not chosen.picolibc  # no adaptation of the build copy


def test_the_debian_adaptation_is_valid_python_that_keeps_the_bsp_flags():
    from deploy.firmware.boards import BSP_TARGETS
    from deploy.firmware.rtthread_tree import Toolchain

    text = picolibc_rtconfig(BSP_TARGETS["qemu"], Toolchain(Path("/usr/bin"), "riscv64-unknown-elf-", True),
                             Path("/b/face_port/compat"))
    scope = {"CFLAGS": " -march=rv64imafdc -mabi=lp64 -O0", "AFLAGS": " -mabi=lp64 ", "DEVICE": "",
             "LFLAGS": " -mabi=lp64  -T link.lds -lsupc++ -lgcc"}
    exec(compile(text, "rtconfig-adaptation", "exec"), scope)  # noqa: S102 - our own generated text
    assert "-mabi=lp64d" in scope["CFLAGS"] and "--specs=picolibc.specs" in scope["LFLAGS"]
    assert "-lsupc++" not in scope["LFLAGS"] and scope["CC"] == "riscv64-unknown-elf-gcc"
