"""Pruning a recognizer: the held-back verification accuracy as the metric (sensitivity and report), a MACs target
reached, and fine-tuning that pulls the pruned embedder back toward the unpruned one (real CelebA-299 faces)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.config import load_config
from tests.conftest import tiny_recognizer_config

pytest.importorskip("tensorflow")


def unpruned_embedder(cfg) -> None:
    """A random-weight embedder of the config as build/<config>/model.keras, its batch norms given spread gammas and
    the statistics of real activations (at their initial values the outputs vanish and every gamma ties): pruning
    needs no trained weights."""
    import keras

    from models.recognizer.embedder import build_embedder
    from models.recognizer.settings import RecognizerSettings
    from pipeline.atomic import write_json
    from tests.kpu_models import set_bn_statistics

    keras.utils.set_random_seed(5)
    settings = RecognizerSettings.from_config(cfg)
    model = build_embedder(cfg.values["model"], settings.embedding_size, settings.head_channels)
    set_bn_statistics(model, 0)
    images = np.random.default_rng(1).uniform(0, 1, (32, *model.input_shape[1:])).astype(np.float32)
    for layer in model.layers:  # moving statistics = these activations' (one batch at momentum 0)
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(images, training=True)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.99
    cfg.build_dir.mkdir(parents=True, exist_ok=True)
    model.save(cfg.build_dir / "model.keras")
    write_json(cfg.build_dir / "model_meta.json", settings.metadata([]))


def test_a_recognizer_prunes_to_a_macs_target_and_fine_tunes_by_distillation(tmp_path, faces, monkeypatch):
    from models.prune_stage import format_prune, prune_stage

    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(tmp_path / "build"))
    cfg = load_config(tiny_recognizer_config(tmp_path, faces), overrides={
        "prune.target_reduction": 0.3, "prune.target_metric": "macs", "prune.allocation": "global_gamma",
        "prune.finetune_epochs": 4, "prune.finetune_lr_scale": 1.0, "train.learning_rate": 0.01})
    unpruned_embedder(cfg)
    stage = prune_stage(cfg)
    report = json.loads((cfg.build_dir / "prune_report.json").read_text())
    assert report["metric"] == {"key": "val_accuracy", "label": "held-back verification accuracy"}
    assert report["target"]["reduction_reached"] >= 0.3 - 0.03 and report["params_after"] < report["params_before"]
    assert all(0.0 <= report[f"val_accuracy_{when}"] <= 1.0 for when in ("before", "pruned", "finetuned"))
    losses = report["rounds"][0]["finetune_loss"]  # 1 - cosine to the unpruned embedder on the training crops
    assert len(losses) == 4 and 0 < losses[-1] < losses[0], losses
    assert "held-back verification accuracy" in format_prune(stage.metrics)
    assert (cfg.build_dir / "pruned.keras").is_file() and prune_stage(cfg).skipped


@pytest.mark.slow
def test_the_sensitivity_curves_of_a_recognizer_measure_held_back_verification(tmp_path, faces, monkeypatch):
    from models.prune_stage import sensitivity_stage

    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(tmp_path / "build"))
    cfg = load_config(tiny_recognizer_config(tmp_path, faces))
    unpruned_embedder(cfg)
    curves = sensitivity_stage(cfg)
    written = json.loads((cfg.build_dir / "prune_sensitivity.json").read_text())
    assert 0.5 <= written["baseline"] <= 1.0 and curves.metrics["units"] == len(written["units"]) > 5
    assert all(0.0 <= value <= 1.0 for unit in written["units"].values() for value in unit["metric"])
    assert (cfg.build_dir / "prune_sensitivity.png").is_file() and sensitivity_stage(cfg).skipped


def test_prune_asks_for_a_trained_recognizer_first(tmp_path, faces, monkeypatch):
    from models.prune_stage import source_model
    from pipeline.errors import PipelineError

    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(tmp_path / "build"))
    with pytest.raises(PipelineError, match="model.keras.*trained model not found|trained model not found"):
        source_model(load_config(tiny_recognizer_config(tmp_path, faces)))


def test_compare_is_refused_for_a_recognizer(tmp_path, faces, monkeypatch):
    from models.prune_compare import compare_stage
    from pipeline.errors import PipelineError

    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(tmp_path / "build"))
    with pytest.raises(PipelineError, match="model.task.*recognizer always distils"):
        compare_stage(load_config(tiny_recognizer_config(tmp_path, faces), overrides={"prune.sparsity": 0.2}))



@pytest.mark.parametrize("centre_images", [0, 8])
def test_a_centred_recognizers_pruning_metric_centres_the_held_back_embeddings(tmp_path, faces, monkeypatch,
                                                                               centre_images):
    from models.recognizer import prune_support
    from models.recognizer.centre import mean_direction, normalised
    from models.recognizer.train import embed
    from models.recognizer.verification import verification_metrics
    from models.yolo_head import load_detector

    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(tmp_path / "build"))
    cfg = load_config(tiny_recognizer_config(tmp_path, faces), overrides={"recognizer.centre_images": centre_images})
    unpruned_embedder(cfg)
    model = load_detector(cfg.build_dir / "model.keras")
    seen = {}
    real_set = prune_support.held_back_set
    monkeypatch.setattr(prune_support, "held_back_set", lambda *args: seen.setdefault("set", real_set(*args)))
    got = prune_support.held_back_accuracy(cfg)(model)
    images, (a, b, same) = seen["set"]
    emb = embed(model, images)
    if centre_images:
        emb = normalised(emb, mean_direction(emb))
    want = verification_metrics(np.sum(emb[a] * emb[b], axis=1), same, np.arange(len(same)) % 5)["accuracy_mean"]
    assert got == round(float(want), 4)
    plain = embed(model, images)
    other = verification_metrics(np.sum(plain[a] * plain[b], axis=1), same, np.arange(len(same)) % 5)
    if centre_images:  # the test tells the two apart on this model
        assert round(float(other["accuracy_mean"]), 4) != got
