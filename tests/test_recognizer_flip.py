"""The flip policy (recognizer.flip_average, issues #12 and #13): a face crop and its mirror image embedded, their
L2-normalised embeddings added, then the one normalisation (L2, minus the centre, L2): the mirror image in Python and
in C, the order of the operations in models/recognizer/centre.py and in the firmware's float32 twin, the centre made
and refused by policy, and the eval JSON."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from deploy.attendance.matching import embedding_units, to_units
from deploy.attendance.matching import normalised as firmware_normalised
from models.recognizer.centre import (
    CENTRE_NAME,
    compute_centre,
    embedding_centre,
    flip_sum,
    normalised,
    policy_embed,
    write_centre,
)
from models.recognizer.crop import mirrored
from pipeline.config import Config
from pipeline.errors import PipelineError
from tests.conftest import shared_path


def column_embed(images: np.ndarray) -> np.ndarray:
    """A runtime whose embedding sees left from right: each colour's mean weighted by the column index, and the
    plain means."""
    columns = np.asarray(images).mean(axis=1, dtype=np.float64)  # (N, W, C)
    weighted = np.einsum("nwc,w->nc", columns, np.arange(columns.shape[1], dtype=np.float64)) / columns.shape[1]
    return np.concatenate([weighted, columns.mean(axis=1)], axis=1)


def test_the_mirror_image_is_the_horizontal_flip_of_a_crop_and_of_a_batch():
    crops = np.random.default_rng(0).integers(0, 256, (3, 5, 4, 3), dtype=np.uint8)
    assert np.array_equal(mirrored(crops), np.flip(crops, axis=2))
    assert np.array_equal(mirrored(crops[1]), np.flip(crops[1], axis=1))
    assert np.array_equal(mirrored(mirrored(crops)), crops)
    with pytest.raises(PipelineError, match="crops of shape"):
        mirrored(crops[0, 0])


def test_python_adds_the_two_unit_embeddings_then_normalises_and_centres():
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 1, (4, 6, 6, 3))
    centre = np.array([0.3, -0.1, 0.2, 0.1, 0.4, 0.2])

    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.linalg.norm(v)

    got = normalised(policy_embed(column_embed, True)(images), centre)
    for k, image in enumerate(images):
        plain, mirror = column_embed(image[None])[0], column_embed(image[None, :, ::-1])[0]
        np.testing.assert_allclose(got[k], unit(unit(unit(plain) + unit(mirror)) - centre), atol=1e-12)
    assert policy_embed(column_embed, False) is column_embed
    raw = column_embed(images)
    np.testing.assert_allclose(flip_sum(raw, 3 * raw), 2 * normalised(raw), atol=1e-12)  # each side counts once
    assert not np.allclose(got, normalised(raw, centre), atol=1e-3)  # the mirror image changed the embeddings


def test_the_firmware_twin_adds_in_float32_between_the_norms_in_the_same_order():
    rng = np.random.default_rng(2)
    codes, mirror_codes = rng.integers(0, 256, 128, dtype=np.uint8), rng.integers(0, 256, 128, dtype=np.uint8)
    centre = (0.4 * rng.standard_normal(128) / np.sqrt(128)).astype(np.float32)

    def unit(c: np.ndarray) -> np.ndarray:
        return firmware_normalised((c.astype(np.int32) - 120).astype(np.float32) * np.float32(0.02))

    added = firmware_normalised(unit(codes) + unit(mirror_codes))  # float32 + float32, as embedding_add
    want = to_units(firmware_normalised(added - centre))
    got = embedding_units(codes, 0.02, 120, centre, mirror_codes)
    assert got.dtype == np.int16 and np.array_equal(got, want)
    assert not np.array_equal(got, embedding_units(codes, 0.02, 120, centre))
    python = to_units(normalised(flip_sum(np.float64([codes]) - 120, np.float64([mirror_codes]) - 120), centre)[0])
    assert np.max(np.abs(python.astype(int) - got)) <= 1  # the same operations, float64 instead of float32


def test_the_centre_is_made_with_the_flip_policy_and_refused_by_the_other():
    rng = np.random.default_rng(3)
    images = list(rng.uniform(0, 1, (5, 6, 6, 3)))
    flipped = compute_centre(column_embed, images, True, batch=2)
    np.testing.assert_allclose(flipped, normalised(policy_embed(column_embed, True)(np.stack(images))).mean(0),
                               atol=1e-6)
    assert not np.allclose(flipped, compute_centre(column_embed, images, False), atol=1e-3)


def flip_config(tmp_path: Path, flip: bool, **recognizer) -> Config:
    return Config("rec", tmp_path / "rec.yaml", {"model": {"task": "recognizer"}, "recognizer": {
        "centre_images": 10, "embedding_size": 4, "flip_average": flip, **recognizer}})


@pytest.mark.parametrize("made", [False, True])
def test_a_centre_of_the_other_flip_policy_is_refused_by_field(tmp_path, monkeypatch, made):
    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(tmp_path / "build"))
    cfg = flip_config(tmp_path, made)
    cfg.build_dir.mkdir(parents=True)
    write_centre(cfg.build_dir / CENTRE_NAME, np.ones(4, np.float32), 10, cfg.build_dir / "model.keras", made)
    assert np.array_equal(embedding_centre(cfg), np.ones(4, np.float32))
    with pytest.raises(PipelineError, match=f"computed with flip_average {made}, the config has {not made}") as caught:
        embedding_centre(cfg.with_values({"recognizer.flip_average": not made}))
    assert caught.value.field == "flip_average" and "invoke export" in str(caught.value)


def test_a_centre_written_before_the_policy_counts_as_unflipped(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(tmp_path / "build"))
    cfg = flip_config(tmp_path, False)
    cfg.build_dir.mkdir(parents=True)
    (cfg.build_dir / CENTRE_NAME).write_text(json.dumps({"values": [0.5] * 4}))
    assert embedding_centre(cfg) is not None
    with pytest.raises(PipelineError, match="flip_average False"):
        embedding_centre(cfg.with_values({"recognizer.flip_average": True}))


def test_the_flag_changes_the_centre_params_but_not_the_training_or_pruning_params():
    from deploy.export import centre_params
    from models.prune_stage import recognizer_params
    from models.recognizer.train import training_keys

    values = {"model": {"task": "recognizer"}, "train": {"seed": 1}, "dataset": {},
              "recognizer": {"centre_images": 10, "flip_average": False, "margin": 0.3}}
    off = Config("r", Path("r.yaml"), values)
    on = Config("r", Path("r.yaml"), {**values, "recognizer": {**values["recognizer"], "flip_average": True}})
    assert centre_params(off) != centre_params(on)
    assert training_keys(off) == training_keys(on) == {"margin": 0.3}
    assert recognizer_params(off) == recognizer_params(on)


def test_eval_embeds_every_runtime_with_the_flip_policy_and_records_it(tmp_path, monkeypatch):
    """evaluate_recognizer with flip_average on 10 LFW dev pairs: the metrics are those of the similarities computed
    here by hand from the runtime's embeddings of each crop and its mirror image, and eval.json says so."""
    from models.recognizer.evaluate import EVAL_NAME, evaluate_recognizer, lfw_metrics
    from tests.test_recognizer_centre import built_config, lfw_set_of

    lfw = shared_path("lfw")
    cfg = built_config(tmp_path, monkeypatch, f"dataset: {{format: folders, train: {tmp_path}}}\n"
                       "model: {task: recognizer, input_size: [112, 112]}\n"
                       f"recognizer: {{lfw: {lfw}, eval_pairs_per_fold: 2, embedding_size: 6, flip_average: true}}\n")
    model = tmp_path / "columns.model"
    model.write_text("a runtime's model file")
    seen = []

    def runtime(images: np.ndarray) -> np.ndarray:
        seen.append(images)
        return column_embed(images)

    report = evaluate_recognizer(cfg, {"columns": (model, lambda _path: runtime)}, teacher=False)
    assert report["flip_average"] is True and json.loads((cfg.build_dir / EVAL_NAME).read_text())["flip_average"]
    crops = seen[0]
    assert np.array_equal(seen[1], crops[:, :, ::-1])  # the second call embeds the mirror images

    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)  # unused images are all zero

    by_hand = unit(column_embed(crops)) + unit(column_embed(crops[:, :, ::-1]))
    data = lfw_set_of(cfg)
    want, _ = lfw_metrics(by_hand, data)
    got = report["runtimes"]["columns"]["lfw"]
    assert got["roc_auc"] == pytest.approx(want["roc_auc"]) and got["accuracy_mean"] == pytest.approx(
        want["accuracy_mean"])


def test_the_spec_reads_the_flag_from_the_compile_report_and_refuses_a_non_bool():
    from deploy.firmware.model_spec import embedder_spec
    from tests.kpu_models import embedder_meta

    def report(**flag) -> dict:
        return {"kind": "embedder", "embedder": {"embedding_size": 128, "meta": embedder_meta(), **flag}}

    assert embedder_spec(report(flip_average=True), Path("r.json")).flip_average is True
    assert embedder_spec(report(), Path("r.json")).flip_average is False  # compiled before the policy: one run
    with pytest.raises(PipelineError, match="got 'yes'") as caught:
        embedder_spec(report(flip_average="yes"), Path("r.json"))
    assert caught.value.field == "embedder.flip_average"


@pytest.mark.parametrize("flip", [False, True])
def test_the_generated_headers_carry_the_flag_and_the_app_its_mirror_buffer(tmp_path, flip):
    from deploy.firmware.model_spec import EmbedderSpec, ModelSpec, TensorSpec
    from deploy.firmware.render import RenderOptions, model_folder, render_firmware

    spec = ModelSpec(kmodel=tmp_path / "model.kmodel", kmodel_size=1000, work_buffer_bytes=64,
                     inputs=(TensorSpec((3, 112, 112), "uint8"),), outputs=(TensorSpec((128, 1, 1), "float32"),),
                     embedder=EmbedderSpec(112, 128, 250, None, flip))
    model = model_folder(render_firmware(spec, RenderOptions(name="rec"), tmp_path / "r").folder, "rec")
    assert f"#define REC_FLIP_AVERAGE {int(flip)}\n" in (model / "rec_embedder.h").read_text()
    app = (model / "rec_app.c").read_text()
    assert "#if REC_FLIP_AVERAGE\nstatic float app_mirror[REC_EMBEDDING_SIZE];" in app
    assert ".mirror = APP_MIRROR," in app


def frame_time_models(tmp_path, monkeypatch):
    """Attendance models whose compile reports give a 5 ms detector, 4 ms per recognizer run and 8 ms per face."""
    from deploy.attendance.stages import AttendanceModels, model_files

    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(tmp_path / "build"))
    configs = {name: Config(name, tmp_path / f"{name}.yaml", {"model": {"task": task}}) for name, task in
               (("det", "detector"), ("rec", "recognizer"))}
    reports = {"det": {"totals": {"latency_ms": 5.0}},
               "rec": {"totals": {"latency_ms": 4.0}, "embedder": {"time_per_face_ms_estimate": 8.0}}}
    for name, report in reports.items():
        build = configs[name].build_dir
        build.mkdir(parents=True)
        (build / "model.kmodel").write_bytes(b"the kmodel is not read here")
        model_files(configs[name])[1].write_text(json.dumps(report))
    attendance = SimpleNamespace(attendance=SimpleNamespace(max_faces=5))  # all frame_times reads of it
    return AttendanceModels(attendance, configs["det"], configs["rec"])


def test_the_frame_time_counts_the_recognizer_s_time_per_face_from_its_report(tmp_path, monkeypatch):
    """The attendance report's K210 estimate per frame: the detector's latency plus, per face, the recognizer
    report's time per face (two runs with the flip policy), not the recognizer's one-run latency."""
    from deploy.attendance.session import frame_times

    assert frame_times(frame_time_models(tmp_path, monkeypatch), [])["k210_estimate_ms"] == {
        "0_faces": 5.0, "1_face": 13.0, "5_faces": 45.0}


def test_qemu_instructions_are_grouped_by_the_faces_the_firmware_printed(tmp_path, monkeypatch):
    """QEMU's counts per frame by number of printed faces: mean, range and frames; uncounted frames left out."""
    from deploy.attendance.people import Photo
    from deploy.attendance.session import FrameCheck, format_session, frame_times

    def check(faces: int, instructions: int | None) -> FrameCheck:
        return FrameCheck(Photo(Path(f"{faces}.png"), None), [{"box": [0, 0, 1, 1]}] * faces, [], instructions)

    checks = [check(0, 100), check(5, 700), check(5, 900), check(1, 300), check(1, None)]
    times = frame_times(frame_time_models(tmp_path, monkeypatch), checks)
    assert times["qemu_instructions_by_faces"] == {"0": {"mean": 100, "min": 100, "max": 100, "frames": 1},
                                                   "1": {"mean": 300, "min": 300, "max": 300, "frames": 1},
                                                   "5": {"mean": 800, "min": 700, "max": 900, "frames": 2}}
    report = {"frames": 5, "board": "qemu", "faces": 12, "faces_named": 0, "agree_with_python": 0,
              "time_per_frame": times}
    assert "QEMU instructions per frame with 5 face(s): 800 (mean of 2 frame(s), 700 to 900)" in format_session(report)
