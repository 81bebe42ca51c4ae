"""Filter pruning: masks propagate through the whole detector graph, and removing dead filters changes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from models.prune import filter_scores, keep_masks, prune_model
from models.yolo_head import build_detector
from pipeline.errors import PipelineError


def detector(family: str):
    import keras

    keras.utils.set_random_seed(3)
    return build_detector({"family": family, "width": 0.125, "input_size": [224, 224], "num_anchors": 2,
                           "anchors": None}, 2)


def _randomise_batch_norm(model, rng):
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.uniform(-0.3, 0.3, n), rng.uniform(-0.2, 0.2, n),
                               rng.uniform(0.5, 2.0, n)])


def test_removing_dead_filters_keeps_the_output(tmp_path):
    import keras

    model = detector("skip_darknet19")
    rng = np.random.default_rng(0)
    _randomise_batch_norm(model, rng)
    # kill a quarter of the filters of every prunable conv of 8 or more: gamma = beta = 0 makes the channel exactly
    # zero (thinner ones would fall under the KPU's 4-filter floor)
    scores = {name: score for name, score in filter_scores(model).items() if len(score) >= 8}
    for name, score in scores.items():
        bn = model.get_layer(f"{name}_bn")
        gamma, beta, mean, var = bn.get_weights()
        dead = rng.permutation(len(score))[: len(score) // 4]
        gamma[dead], beta[dead] = 0, 0
        bn.set_weights([gamma, beta, mean, var])
    masks = keep_masks({name: filter_scores(model)[name] for name in scores}, sparsity=0.25, min_filters=1)
    pruned, summary = prune_model(model, masks)
    assert summary.params_after < summary.params_before
    assert summary.filters_after == sum(len(s) - len(s) // 4 for s in scores.values())
    image = rng.uniform(0, 1, (1, 224, 224, 3)).astype(np.float32)
    np.testing.assert_allclose(pruned(image, training=False), model(image, training=False), atol=1e-4)
    pruned.save(tmp_path / "pruned.keras")
    again = keras.models.load_model(tmp_path / "pruned.keras", safe_mode=False)
    np.testing.assert_allclose(again(image, training=False), model(image, training=False), atol=1e-4)


@pytest.mark.parametrize("family", ["tiny", "mobilenet_v1", "darknet19"])
def test_every_family_prunes_to_a_smaller_runnable_model(family):
    model = detector(family)
    pruned, summary = prune_model(model, keep_masks(filter_scores(model), sparsity=0.5))
    assert summary.params_after < 0.6 * summary.params_before
    assert pruned.output_shape == model.output_shape
    assert np.isfinite(pruned(np.zeros((1, 224, 224, 3), np.float32))).all()


def test_bad_sparsity_is_refused():
    with pytest.raises(PipelineError, match="prune.sparsity"):
        keep_masks({"c": np.ones(8)}, sparsity=1.0)


def test_prune_stage_writes_a_smaller_model_and_its_report(tmp_path, monkeypatch):
    import json

    import keras

    from models.prune_stage import prune_stage
    from models.yolo_head import head_metadata
    from pipeline.config import load_config

    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(tmp_path / "build"))
    path = tmp_path / "p.yaml"
    path.write_text("dataset:\n  format: synthetic\n  synthetic: {train_count: 8, val_count: 4, size: [160, 128]}\n"
                    "model: {family: tiny, width: 0.125, input_size: [128, 128], num_anchors: 2,"
                    " anchors: [[1, 1], [2, 2]]}\n"
                    "train: {batch_size: 4, quiet: true}\nprune: {sparsity: 0.5, finetune_epochs: 1}\n")
    cfg = load_config(path)
    with pytest.raises(PipelineError, match="invoke train"):
        prune_stage(cfg)
    cfg.build_dir.mkdir(parents=True)
    model = build_detector(cfg.values["model"], 1)
    model.save(cfg.build_dir / "model.keras")
    (cfg.build_dir / "model_meta.json").write_text(json.dumps(head_metadata(cfg.values["model"], ["face"],
                                                                             [[1, 1], [2, 2]])))
    result = prune_stage(cfg)
    assert not result.skipped and result.metrics["params_after"] < 0.4 * result.metrics["params_before"]
    for key in ("val_ap50_before", "val_ap50_pruned", "val_ap50_finetuned"):
        assert 0 <= result.metrics[key] <= 1
    round_one = json.loads((cfg.build_dir / "prune_report.json").read_text())["rounds"][0]
    assert len(round_one["finetune_val_ap50"]) == 1 and round_one["kept_epoch"] in (0, 1)
    assert round_one["val_ap50_finetuned"] >= round_one["val_ap50_pruned"]  # the best of pruned and fine-tuned
    pruned = keras.models.load_model(cfg.build_dir / "pruned.keras", safe_mode=False)
    assert pruned.count_params() == result.metrics["params_after"]
    assert json.loads((cfg.build_dir / "prune_report.json").read_text())["per_layer"]
    assert prune_stage(cfg).skipped
    with pytest.raises(PipelineError, match="nothing to prune"):
        prune_stage(cfg.with_values({"prune.sparsity": 0.0}))


@pytest.mark.parametrize("family", ["skip_darknet19", "mobilefacenet"])
def test_a_recognizer_prunes_through_its_flatten_and_dense_head(family):
    import keras

    from models.recognizer.embedder import build_embedder

    keras.utils.set_random_seed(2)
    model = build_embedder({"family": family, "width": 0.25, "input_size": [128, 128], "min_channels": 8}, 16, 8)
    rng = np.random.default_rng(1)
    _randomise_batch_norm(model, rng)
    scores = filter_scores(model)
    for name in ("head_reduce", next(iter(scores))):
        bn = model.get_layer(f"{name}_bn")
        gamma, beta, mean, var = bn.get_weights()
        gamma[:2], beta[:2] = 0, 0
        bn.set_weights([gamma, beta, mean, var])
    masks = {name: np.arange(len(scores[name])) >= 2 for name in ("head_reduce", next(iter(scores)))}
    pruned, summary = prune_model(model, masks)
    assert summary.params_after < summary.params_before
    image = rng.uniform(0, 1, (1, 128, 128, 3)).astype(np.float32)
    np.testing.assert_allclose(pruned(image, training=False), model(image, training=False), atol=1e-4)
