"""Quantization-aware training of a recognizer (quantize.qat_epochs on a recognizer config, real CelebA-299 faces):
`invoke export` fine-tunes the fake-quantised embedder by distillation or by the rotation-consistent margin, the
learned clips reach the uint8 TFLite and the kmodel, and LiteRT and our simulator agree on the result."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.config import load_config
from tests.conftest import tiny_recognizer_config

pytest.importorskip("tensorflow")
# distill is the pruning distiller (tests/test_prune_recognizer.py), so only rcm is in the default suite
LOSSES = (pytest.param("distill", marks=pytest.mark.slow), "rcm")
# the product's family, small: apply_ranges on the tiny MobileFaceNet (depthwise convs, zero padding) already makes
# LiteRT and the simulator disagree with plain minmax PTQ (cosine 0.96), which is not QAT's to test
MODEL = {"model.family": "skip_darknet19", "model.width": 0.0625}


@pytest.fixture(scope="module", params=LOSSES)
def exported(request, tmp_path_factory, faces):
    """(qat_loss, build dir, stage result, two held-back policy crops as uint8) after `export_stage` with one QAT
    epoch on a random-weight embedder whose batch norms hold real statistics, its embeddings centred."""
    from deploy.export import export_stage
    from tests.test_prune_recognizer import unpruned_embedder

    folder = tmp_path_factory.mktemp(f"qat_{request.param}")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(folder / "build"))
    cfg = load_config(tiny_recognizer_config(folder, faces), overrides={
        "quantize.qat_epochs": 1, "quantize.qat_loss": request.param, "quantize.calib_images": 12,
        "quantize.qat_learning_rate": 0.001, "export.held_images": 2, "recognizer.centre_images": 8, **MODEL})
    unpruned_embedder(cfg)
    stage = export_stage(cfg, model_path=cfg.build_dir / "model.keras")
    from deploy.export import sample_images

    crops = sample_images(cfg, "val", 2, 1)
    yield request.param, cfg.build_dir, stage, [np.round(image * 255).astype(np.uint8) for image in crops]
    monkeypatch.undo()


def test_the_learned_clips_are_in_the_tflite_and_the_kmodel(exported):
    from deploy.k210.compiler.tflite_graph import read_tflite
    from deploy.quantize.ranges import int8_params
    from tests.test_quantize_ranges import assert_kmodel_holds

    loss, build, stage, _ = exported
    ranges = json.loads((build / "quant_ranges.json").read_text())
    assert ranges["qat_epochs"] == 1 and ranges["qat_loss"] == loss
    assert ("qat_distill_weight" in ranges) == (loss == "rcm")
    assert ranges.get("qat_centred", False) == (loss == "distill")  # distillation compares centred embeddings
    manifest = json.loads((build / "manifest.json").read_text())
    assert any(name.endswith("embedding_centre.json") for name in manifest["stages"]["quantize"]["inputs"]) == (
        loss == "distill")
    assert stage.metrics["quantize_qat_epochs"] == 1
    graph = read_tflite((build / "model_uint8.tflite").read_bytes())
    learned = [entry for entry in ranges["tensors"].values() if "learned" in entry]
    assert len(learned) >= 20  # the convs, their LeakyReLUs, the embedding
    for entry in learned:
        tensor = graph.tensors[entry["tensor"]]
        scale, zero = int8_params(*entry["learned"])
        assert (float(tensor.scale[0]), int(tensor.zero_point[0]) - (128 if tensor.dtype == "uint8" else 0)) == (
            scale, zero), tensor.name
    assert_kmodel_holds((build / "model_uint8.tflite").read_bytes(),
                        {e["tensor"]: (e["scale"], e["zero_point"]) for e in ranges["tensors"].values()})


def test_litert_and_simulator_agree_on_the_qat_recognizer(exported):
    from tests.kpu_models import compare

    _, build, _, crops = exported
    cosine, within_one, _ = compare((build / "model_uint8.tflite").read_bytes(), crops)
    assert cosine >= 0.999 and within_one >= 0.99, (cosine, within_one)


@pytest.mark.parametrize(("values", "centred"), [
    ({"quantize.qat_epochs": 1, "recognizer.centre_images": 8}, True),
    ({"quantize.qat_epochs": 1, "recognizer.centre_images": 0}, False),  # no centre to distil after
    ({"quantize.qat_epochs": 1, "recognizer.centre_images": 8, "quantize.qat_loss": "rcm"}, False),
    ({"quantize.qat_epochs": 0, "recognizer.centre_images": 8}, False)])  # no QAT
def test_a_centred_recognizers_distillation_qat_depends_on_its_centre(tmp_path, faces, values, centred):
    from deploy.export import qat_centre, qat_params

    cfg = load_config(tiny_recognizer_config(tmp_path, faces), overrides=values)
    assert qat_centre(cfg) == ([cfg.build_dir / "embedding_centre.json"] if centred else [])
    assert qat_params(cfg).get("qat_centred", False) == centred
    assert "qat_kurtosis" not in qat_params(cfg)
    kurtosis = load_config(tiny_recognizer_config(tmp_path, faces), overrides={**values, "quantize.qat_kurtosis": 0.1})
    assert qat_params(kurtosis).get("qat_kurtosis") == (0.1 if values["quantize.qat_epochs"] else None)
