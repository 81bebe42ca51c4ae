"""The firmware of a face recognizer (an embedder kmodel): rendered from the compile report's recognizer metadata,
built for the host and for real RT-Thread in QEMU, `<name>_embed` prints per frame the raw output bytes the
simulator gives on the same crop (models/recognizer/crop.py's crop_face of the same box) and the L2-normalised
embedding. The kmodel is a random-weight w0.125 MobileFaceNet compiled here (tests/kpu_models.py)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deploy.firmware.build import build_host
from deploy.firmware.camera_frames import write_ppm_frames
from deploy.firmware.console import ConsoleResult
from deploy.firmware.model_spec import model_spec
from deploy.firmware.reference_model import voc20_report
from deploy.firmware.render import RenderOptions, model_folder, render_firmware
from deploy.firmware.rtthread_build import build_board
from deploy.firmware.run import run_host, run_qemu
from deploy.k210.sim.simulator import simulate
from models.recognizer.crop import CropPolicy, crop_face
from pipeline.errors import PipelineError
from tests.conftest import rtthread_root, shared_path
from tests.kpu_models import EMBEDDER_MARGIN_PERMILLE, EMBEDDER_SIDE, embedder_kmodel, embedder_meta

MODEL_ADDRESS = 0x300000
QEMU_TOOLS = ("riscv64-unknown-elf-gcc", "qemu-system-riscv64", "scons")


def embedder_report(meta: dict | None) -> dict:
    return {"kind": "embedder", "embedder": {"embedding_size": 128, **({"meta": meta} if meta else {})},
            "outputs": [{"quantization": {"scale": 0.01, "zero_point": 120}}]}


@pytest.mark.parametrize(("meta", "message"), [
    (None, "no recognizer metadata"),
    ({**embedder_meta(), "task": "detector"}, "no recognizer metadata"),
    ({**embedder_meta(), "input_size": [112, 96]}, "square input"),
    ({**embedder_meta(), "crop_margin_permille": 2500}, "margin between 0 and 2"),
    ({**embedder_meta(), "embedding_size": 64}, "the compiled output has 128"),
    (embedder_meta(), "kmodel input is 320x240, the metadata says 112"),
])
def test_an_embedder_report_is_checked_against_the_metadata_and_the_kmodel(meta, message):
    kmodel = shared_path("kmodels", "voc20_yolov2_v3.kmodel")  # a 320x240 detector: any mismatch is caught
    with pytest.raises(PipelineError, match=message):
        model_spec(kmodel, embedder_report(meta), Path("report.json"), score_threshold=0.5, nms_iou=0.3,
                   max_candidates=8)
    assert model_spec(kmodel, voc20_report(), Path("r.json"), score_threshold=0.5, nms_iou=0.3,
                      max_candidates=8).kind == "detector"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("embedder")


@pytest.fixture(scope="module")
def kmodel(workdir) -> Path:
    return embedder_kmodel(workdir / "model")[0]


@pytest.fixture(scope="module")
def rendered(kmodel, workdir) -> Path:
    report_path = kmodel.parent / "compile_report.json"
    spec = model_spec(kmodel, json.loads(report_path.read_text()), report_path, score_threshold=0.5, nms_iou=0.3,
                      max_candidates=8)
    return render_firmware(spec, RenderOptions(name="rec", storage="flash"), workdir / "rendered").folder


@pytest.fixture(scope="module")
def frames(workdir) -> list[Path]:
    """A small portrait noise image, dog.bmp (landscape) and a gradient wider than tall."""
    rng = np.random.default_rng(3)
    noise, ramp = workdir / "noise.png", workdir / "ramp.png"
    Image.fromarray(rng.integers(0, 256, (90, 70, 3), dtype=np.uint8)).save(noise)
    x = np.linspace(0, 255, 150)[None, :, None] * np.ones((60, 1, 3)) * np.array([1.0, 0.5, 0.2])
    Image.fromarray(x.astype(np.uint8)).save(ramp)
    return write_ppm_frames([noise, shared_path("kmodels", "dog.bmp"), ramp], workdir / "frames")


def expected(kmodel: Path, frame: Path, box: list[int]) -> np.ndarray:
    """The simulator's float32 embedding on crop_face's crop of `box` (CHW, the KPU's layout)."""
    with Image.open(frame) as image:
        pixels = np.asarray(image.convert("RGB"))
    crop = crop_face(pixels, tuple(box), CropPolicy(EMBEDDER_SIDE, EMBEDDER_MARGIN_PERMILLE))
    return simulate(kmodel, np.ascontiguousarray(crop.transpose(2, 0, 1))).outputs[0].reshape(-1)


def assert_matches_simulator(result: ConsoleResult, kmodel: Path, frames: list[Path], boxes: list[list[int]]) -> None:
    assert [f.frame for f in result.frames] == list(range(len(frames)))
    for index, (frame, box) in enumerate(zip(frames, boxes, strict=True)):
        printed = result.frames[index]
        assert printed.box == box
        want = expected(kmodel, frame, box)
        assert result.outputs[(index, 0)] == want.tobytes()  # the raw float32 output, byte for byte
        unit = want.astype(np.float64) / np.linalg.norm(want.astype(np.float64))
        np.testing.assert_allclose(printed.embedding, unit, atol=0.6e-4)  # printed in 1e-4 units
        assert np.linalg.norm(printed.embedding) == pytest.approx(1.0, abs=1e-3)


def frame_sizes(frames: list[Path]) -> list[tuple[int, int]]:
    sizes = []
    for frame in frames:
        with Image.open(frame) as image:
            sizes.append(image.size)
    return sizes


@pytest.mark.slow
def test_rendered_headers_carry_the_recognizer_facts(rendered, kmodel):
    folder = model_folder(rendered, "rec")
    header = (folder / "rec_embedder.h").read_text()
    report = json.loads((kmodel.parent / "compile_report.json").read_text())
    assert f"#define REC_INPUT_SIZE {EMBEDDER_SIDE}\n" in header and \
        f"REC_CROP_MARGIN_PERMILLE {EMBEDDER_MARGIN_PERMILLE}\n" in header
    assert "#define REC_EMBEDDING_SIZE 128u" in header
    model_h = (folder / "rt_ai_rec_model.h").read_text()
    assert f"RT_AI_REC_OUT_1_ZERO_POINT {report['outputs'][0]['quantization']['zero_point']}\n" in model_h
    assert "RT_AI_REC_OUT_1_SIZE_BYTES 512u" in model_h  # float32: the kmodel dequantizes itself
    assert "MSH_CMD_EXPORT(rec_embed," in (folder / "rec_app.c").read_text()
    assert not (folder / "rec_detector.h").exists()


@pytest.mark.slow
def test_host_embeds_the_whole_frame_like_the_simulator(rendered, kmodel, frames, workdir):
    build = build_host(rendered, workdir / "host", kmodel_bytes=kmodel.stat().st_size)
    result = run_host(build.program, frames, flash_files={MODEL_ADDRESS: kmodel}, dump=True)
    assert_matches_simulator(result, kmodel, frames, [[0, 0, w, h] for w, h in frame_sizes(frames)])
    assert build.size["fits"]


@pytest.mark.slow
def test_host_embeds_a_given_box_and_bounds_the_frames(rendered, kmodel, frames, workdir):
    build = build_host(rendered, workdir / "host_box")
    box = [-20, 15, 60, 101]  # partly outside every frame: edge pixels repeated, as crop_face does
    result = run_host(build.program, frames, flash_files={MODEL_ADDRESS: kmodel}, dump=True,
                      args=[*map(str, box), "2"])
    assert_matches_simulator(result, kmodel, frames[:2], [box, box])
    with pytest.raises(PipelineError, match=r"usage: rec_embed \[N\] \| rec_embed x1 y1 x2 y2 \[N\]"):
        run_host(build.program, frames, flash_files={MODEL_ADDRESS: kmodel}, args=["1", "2", "x"])


@pytest.mark.slow
@pytest.mark.skipif(any(shutil.which(t) is None for t in QEMU_TOOLS),
                    reason="riscv64-unknown-elf-gcc / qemu-system-riscv64 / scons not installed (invoke setup)")
def test_qemu_rtthread_embeds_like_the_simulator(rendered, kmodel, frames, workdir):
    rtthread_root()
    build = build_board("qemu", [rendered], workdir / "qemu", workdir / "qemu_bsp")
    assert build.report.models["rec"]["msh"] == "rec_embed"
    whole = run_qemu(build.image, frames, command="rec_embed", flash_files={MODEL_ADDRESS: kmodel}, dump=True)
    assert_matches_simulator(whole, kmodel, frames, [[0, 0, w, h] for w, h in frame_sizes(frames)])
    boxed = run_qemu(build.image, frames[1:2], command="rec_embed 100 40 220 200", flash_files={MODEL_ADDRESS: kmodel},
                     dump=True)
    assert_matches_simulator(boxed, kmodel, frames[1:2], [[100, 40, 220, 200]])
    print("qemu ms per face:", [f.ms for f in whole.frames + boxed.frames], "image bytes:",
          build.image.stat().st_size)


@pytest.mark.slow
def test_host_flip_policy_equals_the_python_twin_bit_for_bit(kmodel, frames, workdir):
    """recognizer.flip_average with a centre: the firmware runs the crop, then its mirror image (the last output
    dumped is the mirrored crop's, as the simulator gives it), and prints exactly the units of the Python twin
    (deploy/attendance: FaceReader.embed, matching.embedding_units); the report counts two runs per face."""
    from deploy.attendance.recognize import FaceReader
    from models.recognizer.crop import mirrored

    centre = (0.5 * np.random.default_rng(5).standard_normal(128) / np.sqrt(128)).astype(np.float32)
    flip_kmodel, report = embedder_kmodel(workdir / "flip", centre=centre, flip=True)
    plain = json.loads((kmodel.parent / "compile_report.json").read_text())
    assert flip_kmodel.read_bytes() == kmodel.read_bytes()  # the policy changes the firmware, not the model
    assert report["embedder"]["runs_per_face"] == 2 and report["embedder"]["time_per_face_ms_estimate"] == \
        pytest.approx(2 * plain["embedder"]["time_per_face_ms_estimate"], abs=2e-3)
    report_path = flip_kmodel.parent / "compile_report.json"
    spec = model_spec(flip_kmodel, report, report_path, score_threshold=0.5, nms_iou=0.3, max_candidates=8)
    assert spec.embedder.flip_average
    rendered = render_firmware(spec, RenderOptions(name="rec"), workdir / "rendered_flip").folder
    assert "#define REC_FLIP_AVERAGE 1\n" in (model_folder(rendered, "rec") / "rec_embedder.h").read_text()
    build = build_host(rendered, workdir / "host_flip")
    box = [5, -10, 70, 80]
    result = run_host(build.program, frames, flash_files={MODEL_ADDRESS: flip_kmodel}, dump=True,
                      args=[str(v) for v in box])
    detector = model_spec(shared_path("kmodels", "voc20_yolov2_v3.kmodel"), voc20_report(), Path("r.json"),
                          score_threshold=0.5, nms_iou=0.3, max_candidates=8)
    twin = FaceReader(detector, spec, 1)
    unflipped = FaceReader(detector, replace(spec, embedder=replace(spec.embedder, flip_average=False)), 1)
    policy = CropPolicy(EMBEDDER_SIDE, EMBEDDER_MARGIN_PERMILLE)
    for index, frame in enumerate(frames):
        with Image.open(frame) as image:
            pixels = np.asarray(image.convert("RGB"))
        mirror = simulate(flip_kmodel, np.ascontiguousarray(mirrored(crop_face(pixels, tuple(box), policy))
                                                            .transpose(2, 0, 1))).outputs[0]
        assert result.outputs[(index, 0)] == mirror.tobytes()  # the second run saw the mirrored crop
        want = twin.embed(pixels, tuple(box))
        assert result.frames[index].embedding_units == want.tolist()  # bit for bit, as enrolled and matched
        assert not np.array_equal(want, unflipped.embed(pixels, tuple(box)))  # the mirror image matters
