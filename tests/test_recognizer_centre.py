"""The recognizer's embedding centre (models/recognizer/centre.py): the export stage's embedding_centre.json (written,
skipped when current, rerun when the model changes), evaluation centring every runtime, the compile report and the
firmware spec carrying it (bad centres refused by field) and the generated headers holding it float32-exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deploy.attendance.matching import embedding_units, to_units
from deploy.attendance.matching import normalised as firmware_normalised
from deploy.firmware.model_spec import EmbedderSpec, ModelSpec, TensorSpec, embedder_spec
from deploy.firmware.render import RenderOptions, model_folder, render_firmware
from models.recognizer.centre import (
    CENTRE_NAME,
    embedding_centre,
    mean_direction,
    normalised,
    read_centre,
    write_centre,
)
from models.recognizer.evaluate import LfwSet, centred, lfw_metrics
from models.recognizer.lfw_pairs import LfwPairs
from pipeline.config import Config, load_config
from pipeline.errors import PipelineError
from tests.conftest import shared_path, tiny_recognizer_config
from tests.kpu_models import embedder_meta


def test_centring_changes_the_pair_similarity_as_computed_by_hand():
    """Two faces 16 degrees apart in a cone around (1, 1): centred by the cone's axis they point opposite ways."""
    raw = np.array([[3.0, 4.0], [4.0, 3.0], [6.0, 8.0], [0.8, 0.6]])  # images 0-3 (scale does not matter)
    pairs = LfwPairs(images=tuple(Path(f"{i}.jpg") for i in range(4)), a=np.array([0, 2, 0, 2]),
                     b=np.array([1, 3, 1, 3]), same=np.array([True, False, True, False]), fold=np.array([0, 0, 1, 1]))
    data = LfwSet(pairs, np.zeros((4, 1, 1, 3), np.uint8), np.ones(4, bool))
    _, plain = lfw_metrics(raw, data)
    np.testing.assert_allclose(plain, [0.96] * 4)  # 0.6 * 0.8 + 0.8 * 0.6
    centre = np.array([0.7, 0.7], np.float32)
    _, centred_similarity = lfw_metrics(centred(lambda images: raw, centre)(None), data)
    # (0.6, 0.8) - (0.7, 0.7) = (-0.1, 0.1) and (0.1, -0.1): unit vectors opposite each other
    np.testing.assert_allclose(centred_similarity, [-1.0] * 4, atol=1e-6)
    np.testing.assert_allclose(normalised(raw, None), normalised(raw))  # no centre: the plain L2 norm
    with pytest.raises(PipelineError, match="centre of shape"):
        normalised(raw, np.zeros(3, np.float32))


def test_the_centre_is_the_mean_of_the_normalised_embeddings_not_of_the_raw_ones():
    raw = np.array([[10.0, 0.0], [0.0, 1.0]])
    np.testing.assert_array_equal(mean_direction(raw), np.array([0.5, 0.5], np.float32))  # raw mean: (5, 0.5)


def test_the_firmware_twin_centres_in_float32_between_two_l2_norms():
    rng = np.random.default_rng(4)
    codes = rng.integers(0, 256, 128).astype(np.uint8)
    centre = (0.4 * rng.standard_normal(128) / np.sqrt(128)).astype(np.float32)
    unit = firmware_normalised((codes.astype(np.int32) - 120).astype(np.float32) * np.float32(0.02))
    want = to_units(firmware_normalised(unit - centre))  # float32 subtraction, as embedding_centre does
    got = embedding_units(codes, 0.02, 120, tuple(float(v) for v in centre))
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got, embedding_units(codes, 0.02, 120))  # the centre matters
    np.testing.assert_array_equal(embedding_units(codes, 0.02, 120, None), to_units(unit))


def embedder_report(centre) -> dict:
    return {"kind": "embedder", "embedder": {"embedding_size": 128, "meta": embedder_meta(), "centre": centre}}


@pytest.mark.parametrize(("centre", "message"), [
    ([0.1] * 127, "got 127 values"),
    ([0.1] * 127 + [float("nan")], "not all finite"),
    ([0.1] * 127 + [True], "not all finite"),
    ([0.1] * 127 + [1e300], "not all finite"),  # finite in float64, not in float32
    ("zeros", "got 'zeros'"),
])
def test_a_bad_centre_in_the_compile_report_is_refused_by_field(centre, message):
    with pytest.raises(PipelineError, match=message) as caught:
        embedder_spec(embedder_report(centre), Path("compile_report.json"))
    assert caught.value.field == "embedder.centre"
    assert "128 finite numbers" in str(caught.value)


def test_the_spec_reads_the_centre_float32_exact_and_no_centre_is_none():
    centre = (np.arange(128, dtype=np.float32) / np.float32(300)).astype(np.float32)
    spec = embedder_spec(embedder_report([float(v) for v in centre]), Path("r.json"))
    assert np.array_equal(np.asarray(spec.centre, np.float32), centre)
    assert embedder_spec({"kind": "embedder", "embedder": {"embedding_size": 128, "meta": embedder_meta()}},
                         Path("r.json")).centre is None


def rendered_app(tmp_path: Path, centre: tuple[float, ...] | None) -> tuple[str, str]:
    spec = ModelSpec(kmodel=tmp_path / "model.kmodel", kmodel_size=1000, work_buffer_bytes=64,
                     inputs=(TensorSpec((3, 112, 112), "uint8"),), outputs=(TensorSpec((128, 1, 1), "float32"),),
                     embedder=EmbedderSpec(112, 128, 250, centre))
    folder = render_firmware(spec, RenderOptions(name="rec"), tmp_path / ("c" if centre else "plain")).folder
    model = model_folder(folder, "rec")
    return (model / "rec_embedder.h").read_text(), (model / "rec_app.c").read_text()


def test_the_embedder_header_holds_the_centre_as_float32_exact_literals(tmp_path):
    rng = np.random.default_rng(9)
    centre = tuple(float(v) for v in (rng.standard_normal(128) / 10).astype(np.float32))
    header, app = rendered_app(tmp_path, centre)
    body = header.split("#define REC_CENTRE_VALUES \\\n")[1].split("\n\n")[0]
    literals = [line.strip().rstrip(", \\") for line in body.splitlines()]
    assert len(literals) == 128 and all(text.endswith("f") for text in literals)
    assert np.array_equal(np.array([float(t[:-1]) for t in literals], np.float32), np.array(centre, np.float32))
    assert "static const float app_centre[REC_EMBEDDING_SIZE] = {REC_CENTRE_VALUES};" in app
    assert ".centre = app_centre," in app
    plain_header, plain_app = rendered_app(tmp_path, None)
    assert "CENTRE" not in plain_header and "app_centre" not in plain_app and ".centre = RT_NULL," in plain_app


def centre_config(tmp_path: Path, faces: Path, count: int) -> Config:
    return load_config(tiny_recognizer_config(tmp_path, faces, centre_images=count))


def test_no_centre_when_the_config_has_none_and_a_missing_file_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(tmp_path / "build"))
    cfg = Config("rec", tmp_path / "rec.yaml", {"model": {"task": "recognizer"},
                                                 "recognizer": {"centre_images": 0, "embedding_size": 4}})
    assert embedding_centre(cfg) is None
    with pytest.raises(PipelineError, match="embedding centre not found.*invoke export"):
        embedding_centre(cfg.with_values({"recognizer.centre_images": 10}))
    detector = Config("det", tmp_path / "det.yaml", {"model": {"task": "detector"},
                                                      "recognizer": {"centre_images": 10, "embedding_size": 4}})
    assert embedding_centre(detector) is None


def test_the_export_centre_stage_writes_skips_and_reruns_when_the_model_changes(tmp_path, monkeypatch, faces):
    import keras

    from deploy.export import centre_stage
    from models.recognizer.embedder import build_embedder, load_embedder
    from models.recognizer.evaluate import keras_embed
    from models.recognizer.settings import RecognizerSettings

    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(tmp_path / "build"))
    cfg = centre_config(tmp_path, faces, 10)
    cfg.build_dir.mkdir(parents=True)
    model_path = cfg.build_dir / "model.keras"
    keras.utils.set_random_seed(1)
    build_embedder(cfg.values["model"], 128, 32).save(model_path)

    first = centre_stage(cfg, model_path)
    assert not first.skipped and first.metrics["centre_images"] == 10
    record = json.loads((cfg.build_dir / CENTRE_NAME).read_text())
    assert record["images"] == 10 and record["model"] == str(model_path)
    images = RecognizerSettings.from_config(cfg).sample_images("train", 10, int(cfg.values["train"]["seed"]))
    raw = keras_embed(load_embedder(model_path))(np.stack(images))
    np.testing.assert_allclose(read_centre(cfg.build_dir / CENTRE_NAME, 128), normalised(raw).mean(0), atol=1e-6)
    assert np.array_equal(embedding_centre(cfg), np.asarray(record["values"], np.float32))

    assert centre_stage(cfg, model_path).skipped
    keras.utils.set_random_seed(2)
    build_embedder(cfg.values["model"], 128, 32).save(model_path)
    again = centre_stage(cfg, model_path)
    assert not again.skipped
    assert not np.array_equal(embedding_centre(cfg), np.asarray(record["values"], np.float32))
    assert centre_stage(centre_config(tmp_path, faces, 0), model_path) is None

    flipped = cfg.with_values({"recognizer.flip_average": True})  # the flag alone re-runs the stage
    result = centre_stage(flipped, model_path)
    assert not result.skipped and result.metrics["flip_average"] is True
    assert json.loads((cfg.build_dir / CENTRE_NAME).read_text())["flip_average"] is True
    raw = keras_embed(load_embedder(model_path))
    stacked = np.stack(images)
    both = normalised(raw(stacked)) + normalised(raw(stacked[:, :, ::-1]))
    np.testing.assert_allclose(embedding_centre(flipped), normalised(both).mean(0), atol=1e-6)
    assert centre_stage(flipped, model_path).skipped
    with pytest.raises(PipelineError, match="computed with flip_average True"):
        embedding_centre(cfg)


def built_config(tmp_path: Path, monkeypatch, text: str) -> Config:
    """The config `text` as tmp_path/rec.yaml, its build folder made under a temp build root."""
    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(tmp_path / "build"))
    config = tmp_path / "rec.yaml"
    config.write_text(text)
    cfg = load_config(config)
    cfg.build_dir.mkdir(parents=True)
    return cfg


def test_compile_refuses_a_centred_recognizer_without_its_centre_before_writing(tmp_path, monkeypatch):
    from deploy.k210.compiler.compile_stage import compile_stage

    cfg = built_config(tmp_path, monkeypatch, "model: {task: recognizer}\nrecognizer: {centre_images: 10}\n")
    (cfg.build_dir / "model_uint8.tflite").write_bytes(b"not compiled: the centre is checked first")
    with pytest.raises(PipelineError, match="embedding centre not found") as caught:
        compile_stage(cfg)
    assert caught.value.path == str(cfg.build_dir / CENTRE_NAME)
    assert sorted(p.name for p in cfg.build_dir.iterdir()) == ["model_uint8.tflite"]


def test_eval_centres_every_runtime_as_computed_by_hand_on_real_lfw_pairs(tmp_path, monkeypatch):
    """evaluate_recognizer on 10 LFW dev pairs with a runtime whose embedding is a crop's mean colour and the
    brightness of its top half: its metrics are
    those of the pair similarities computed here by hand (L2 norm, minus the centre, L2 norm, dot product)."""
    from models.recognizer.evaluate import evaluate_recognizer
    from models.recognizer.verification import verification_metrics

    lfw = shared_path("lfw")
    cfg = built_config(tmp_path, monkeypatch, f"dataset: {{format: folders, train: {tmp_path}}}\n"
                       "model: {task: recognizer, input_size: [112, 112]}\n"
                       f"recognizer: {{lfw: {lfw}, eval_pairs_per_fold: 2, centre_images: 3, embedding_size: 4}}\n")
    centre = np.array([0.45, 0.47, 0.46, 0.5], np.float32)  # about the direction of a grey crop: centring matters
    (cfg.build_dir / CENTRE_NAME).write_text(json.dumps({"values": [float(v) for v in centre]}))
    model = tmp_path / "colour.model"
    model.write_text("a runtime's model file")
    seen = {}

    def colour(images: np.ndarray) -> np.ndarray:
        seen["crops"] = images
        top = images[:, :images.shape[1] // 2].mean(axis=(1, 2, 3))[:, None]
        return np.concatenate([images.mean(axis=(1, 2)), top], axis=1).astype(np.float64)

    report = evaluate_recognizer(cfg, {"colour": (model, lambda _path: colour)}, teacher=False)
    assert report["centre"] == str(cfg.build_dir / CENTRE_NAME)
    data = lfw_set_of(cfg)
    raw, p, used = colour(seen["crops"]), data.pairs, data.used

    def direction(vector: np.ndarray) -> np.ndarray:
        return vector / np.sqrt(np.sum(vector * vector))

    def centred_direction(index: int) -> np.ndarray:
        return direction(direction(raw[index]) - centre.astype(np.float64))

    pairs = list(zip(p.a[used], p.b[used], strict=True))
    by_hand = np.array([centred_direction(a) @ centred_direction(b) for a, b in pairs])
    want = verification_metrics(by_hand, p.same[used], p.fold[used])
    got = report["runtimes"]["colour"]["lfw"]
    assert got["roc_auc"] == pytest.approx(want["roc_auc"]) and got["accuracy_mean"] == pytest.approx(
        want["accuracy_mean"])
    plain = np.array([direction(raw[a]) @ direction(raw[b]) for a, b in pairs])
    assert not np.allclose(plain, by_hand, atol=1e-3)  # the centre changed the similarities


def lfw_set_of(cfg: Config) -> LfwSet:
    from models.recognizer.evaluate import lfw_set
    from models.recognizer.settings import RecognizerSettings

    rec = cfg.values["recognizer"]
    return lfw_set(RecognizerSettings.from_config(cfg), cfg.resolve_path(rec["lfw"]), int(rec["eval_pairs_per_fold"]))


def test_eval_of_another_model_file_is_refused_with_the_exported_centre(tmp_path, monkeypatch):
    from deploy.evaluate import evaluate_recognizer_stage

    cfg = built_config(tmp_path, monkeypatch,
                       "model: {task: recognizer}\nrecognizer: {centre_images: 10, embedding_size: 4}\n")
    write_centre(cfg.build_dir / CENTRE_NAME, np.zeros(4, np.float32), 10, cfg.build_dir / "model.keras")
    with pytest.raises(PipelineError, match=r"centre is of .*model.keras', not of .*other.keras") as caught:
        evaluate_recognizer_stage(cfg, model_path=tmp_path / "other.keras")
    assert caught.value.field == "model" and "recognizer.centre_images=0" in str(caught.value)
    assert sorted(p.name for p in cfg.build_dir.iterdir()) == [CENTRE_NAME]
