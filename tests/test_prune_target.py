"""Pruning to a global target: sensitivity curves, the three allocations, groups that must agree, rounding, the
KPU floor, the latency estimate, distillation, and the errors that name the layer or field."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deploy.k210.compiler.cycles import kpu_conv_us
from models.prune import coupled_groups, filter_scores, prune_model, prune_units, top_mask, unit_masks
from models.prune_allocate import allocate
from models.prune_cost import model_cost
from models.prune_sensitivity import _silence, allowed_ratio, sensitivity_curves
from models.yolo_head import build_detector
from pipeline.errors import PipelineError


def detector(family: str = "skip_darknet19"):
    import keras

    keras.utils.set_random_seed(3)
    model = build_detector({"family": family, "width": 0.25, "input_size": [128, 128], "num_anchors": 2,
                            "anchors": None, "output_stride": 16}, 1)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.05, 1.5, n), rng.uniform(-0.3, 0.3, n), rng.uniform(-0.2, 0.2, n),
                               rng.uniform(0.5, 2.0, n)])
    return model


def residual_model():
    """conv a -> BN -> leaky, conv b -> BN, Add(a, b) -> conv c: a and b must keep the same channels."""
    import keras

    inputs = keras.Input((16, 16, 3))
    a = keras.layers.LeakyReLU(0.1, name="a_leaky")(keras.layers.BatchNormalization(name="a_bn")(
        keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="a")(inputs)))
    b = keras.layers.BatchNormalization(name="b_bn")(keras.layers.Conv2D(8, 3, padding="same", use_bias=False,
                                                                         name="b")(a))
    added = keras.layers.Add(name="add")([a, b])
    out = keras.layers.Conv2D(5, 1, name="out")(keras.layers.Conv2D(8, 1, name="c")(added))
    return keras.Model(inputs, out, name="residual")


def test_silencing_a_filter_in_place_equals_removing_it():
    model = detector()
    image = np.random.default_rng(1).uniform(0, 1, (1, 128, 128, 3)).astype(np.float32)
    score = filter_scores(model)["darknet_conv9"]
    keep = top_mask(score, len(score) // 2)
    pruned, _ = prune_model(model, {"darknet_conv9": keep})
    restore = _silence(model, "darknet_conv9", ~keep)
    np.testing.assert_allclose(model(image, training=False), pruned(image, training=False), atol=1e-4)
    for layer, weights in restore:
        layer.set_weights(weights)
    assert not np.allclose(model(image, training=False), pruned(image, training=False), atol=1e-4)


def test_sensitivity_curves_cover_every_unit_and_ratio_and_restore_the_model():
    model = detector("tiny")
    before = [w.copy() for w in model.get_weights()]
    image = np.random.default_rng(2).uniform(0, 1, (2, 128, 128, 3)).astype(np.float32)
    reference = np.asarray(model(image, training=False))
    metric = lambda m: -float(np.abs(np.asarray(m(image, training=False)) - reference).mean())  # noqa: E731
    result = sensitivity_curves(model, metric, "gamma", ratios=(0.25, 0.5, 0.75))
    assert set(result["units"]) == set(filter_scores(model)) and result["baseline"] == 0
    for curve in result["units"].values():
        assert len(curve["metric"]) == 3 and curve["kept"][0] >= curve["kept"][-1] >= 4
        assert curve["metric"][-1] <= curve["metric"][0] <= 0
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


def test_allowed_ratio_is_monotone_in_the_tolerance():
    curve = {"metric": [0.8, 0.79, 0.81, 0.7, 0.5]}
    ratios = [0.1, 0.2, 0.3, 0.4, 0.5]
    assert allowed_ratio(curve, ratios, 0.8, 0.0) <= 0.1 + 1e-6
    assert allowed_ratio(curve, ratios, 0.8, 0.0101) == pytest.approx(0.3, abs=1e-3)  # 0.3 counts as 0.01 lost
    assert allowed_ratio(curve, ratios, 0.8, 0.1) == pytest.approx(0.4, abs=1e-3)
    assert allowed_ratio(curve, ratios, 0.8, 1.0) == 0.5


@pytest.mark.parametrize("allocation", ["uniform", "global_gamma", "sensitivity"])
def test_each_allocation_reaches_a_macs_target_with_rounded_counts(allocation):
    model = detector()
    scores = prune_units(model, filter_scores(model))
    curves = None
    if allocation == "sensitivity":  # a synthetic curve: deeper units (more filters) are less sensitive
        curves = {"baseline": 0.8, "ratios": [0.1 * i for i in range(1, 10)],
                  "units": {u: {"filters": len(s), "metric": [0.8 - 0.02 * i * 64 / len(s) for i in range(1, 10)]}
                            for u, s in scores.items()}}
    reference = model_cost(model, "macs")
    chosen = allocate(model, scores, allocation=allocation, cost=lambda m: model_cost(m, "macs"),
                      reference=reference, reduction=0.4, min_filters=4, round_to=4, curves=curves)
    assert 0.4 <= chosen.reduction < 0.55
    assert all(k % 4 == 0 or k == len(scores[u]) for u, k in chosen.counts.items())
    assert all(k >= 4 for k in chosen.counts.values())
    pruned, _ = prune_model(model, unit_masks({u: top_mask(scores[u], k) for u, k in chosen.counts.items()}))
    assert model_cost(pruned, "macs") == pytest.approx(chosen.cost)


def test_global_gamma_prunes_the_low_gamma_layer_most():
    model = detector()
    bn = model.get_layer("darknet_conv14_bn")
    gamma, *rest = bn.get_weights()
    bn.set_weights([gamma * 0.01, *rest])
    scores = prune_units(model, filter_scores(model))
    chosen = allocate(model, scores, allocation="global_gamma", cost=lambda m: model_cost(m, "params"),
                      reference=model_cost(model, "params"), reduction=0.2, min_filters=4, round_to=4)
    assert chosen.counts["darknet_conv14"] == 4


def test_a_target_beyond_the_floor_is_refused_naming_the_field():
    model = detector("tiny")
    scores = prune_units(model, filter_scores(model))
    with pytest.raises(PipelineError, match="prune.target_reduction.*cannot be reached"):
        allocate(model, scores, allocation="uniform", cost=lambda m: model_cost(m, "macs"),
                 reference=model_cost(model, "macs"), reduction=0.99, min_filters=4, round_to=4)


def test_a_layer_under_the_kpu_floor_is_refused_by_name():
    model = detector("tiny")
    scores = filter_scores(model)
    name = next(iter(scores))
    with pytest.raises(PipelineError, match=f"prune.min_filters.*{name}.*keep 2"):
        prune_model(model, {name: top_mask(scores[name], 2)})


def test_gamma_on_a_model_without_batch_norm_names_the_conv():
    import keras

    inputs = keras.Input((16, 16, 3))
    hidden = keras.layers.Conv2D(8, 3, padding="same", name="bare_conv")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(4, 1, name="out")(hidden))
    with pytest.raises(PipelineError, match="prune.criterion.*bare_conv.*no batch norm"):
        filter_scores(model, "gamma")
    assert list(filter_scores(model, "l1")) == ["bare_conv"]


def test_convs_added_together_are_one_unit_and_keep_the_same_channels():
    model = residual_model()
    rng = np.random.default_rng(4)
    for name in ("a_bn", "b_bn"):
        layer = model.get_layer(name)
        layer.set_weights([rng.uniform(0.5, 1.5, 8), rng.uniform(-0.2, 0.2, 8), np.zeros(8), np.ones(8)])
    groups, fixed = coupled_groups(model)
    assert groups == [("a", "b")] and not fixed
    scores = prune_units(model, filter_scores(model, "l1"))
    assert set(scores) == {"a+b", "c"}
    # kill channels 0..3 of both a and b (gamma = beta = 0): the added map is 0 there, so removing them is exact
    for name in ("a_bn", "b_bn"):
        gamma, beta, mean, var = model.get_layer(name).get_weights()
        gamma[:4], beta[:4] = 0, 0
        model.get_layer(name).set_weights([gamma, beta, mean, var])
    masks = unit_masks({"a+b": np.arange(8) >= 4})
    pruned, _ = prune_model(model, masks)
    image = rng.uniform(0, 1, (1, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(pruned(image), model(image), atol=1e-4)
    assert pruned.get_layer("a").filters == pruned.get_layer("b").filters == 4
    with pytest.raises(PipelineError, match="'add' keep different channels"):
        prune_model(model, {"a": np.arange(8) >= 4, "b": np.arange(8) < 4})


def test_latency_estimate_follows_the_compilers_cycle_model_and_drops_with_channels():
    model = detector()
    full = model_cost(model, "latency", kpu_conv_us)
    scores = prune_units(model, filter_scores(model))
    pruned, _ = prune_model(model, unit_masks({u: top_mask(s, max(4, len(s) // 2)) for u, s in scores.items()}))
    assert 0 < model_cost(pruned, "latency", kpu_conv_us) < 0.8 * full
    assert model_cost(model, "latency", kpu_conv_us, fuse_leaky=True) < full
    with pytest.raises(PipelineError, match="prune.target_metric"):
        model_cost(model, "latency")


def test_distillation_term_is_zero_when_student_equals_teacher():
    import tensorflow as tf

    from models.prune_distill import DistilledLoss, with_teacher
    from models.yolo_loss import YoloV2Loss

    model = detector("tiny")
    base = YoloV2Loss([[1, 1], [2, 2]], 1)
    image = np.random.default_rng(5).uniform(0, 1, (2, 128, 128, 3)).astype(np.float32)
    both = with_teacher(model, detector("tiny"))(image)
    assert both.shape[-1] == 2 * model.output_shape[-1]
    target = tf.zeros((2, 3, 5))
    raw = model(image)
    same = DistilledLoss(base, 5.0).call(target, tf.concat([raw, raw], -1))
    np.testing.assert_allclose(same, base.call(target, raw), rtol=1e-5)
    other = DistilledLoss(base, 5.0).call(target, tf.concat([raw, raw + 1.0], -1))
    assert (np.asarray(other) > np.asarray(same)).all()


CONFIG = ("dataset:\n  format: synthetic\n  synthetic: {train_count: 8, val_count: 4, size: [160, 128]}\n"
          "model: {family: tiny, width: 0.125, input_size: [128, 128], num_anchors: 2, anchors: [[1, 1], [2, 2]]}\n"
          "train: {batch_size: 4, quiet: true}\n"
          "prune: {target_reduction: 0.3, allocation: sensitivity, rounds: 2, finetune_epochs: 1, distill: 1.0}\n")


@pytest.mark.slow  # about a minute on 2 shared cores
def test_a_target_run_reuses_the_sensitivity_stage_and_reports_asked_and_reached(tmp_path, monkeypatch):
    from models.prune_stage import prune_stage, sensitivity_stage
    from models.yolo_head import head_metadata
    from pipeline.config import load_config

    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(tmp_path / "build"))
    path = tmp_path / "p.yaml"
    path.write_text(CONFIG)
    cfg = load_config(path)
    cfg.build_dir.mkdir(parents=True)
    build_detector(cfg.values["model"], 1).save(cfg.build_dir / "model.keras")
    (cfg.build_dir / "model_meta.json").write_text(json.dumps(head_metadata(cfg.values["model"], ["face"],
                                                                             [[1, 1], [2, 2]])))
    assert not sensitivity_stage(cfg).skipped
    curves = json.loads((cfg.build_dir / "prune_sensitivity.json").read_text())
    assert len(curves["units"]) >= 5 and (cfg.build_dir / "prune_sensitivity.png").is_file()
    result = prune_stage(cfg, conv_time=kpu_conv_us)
    report = json.loads((cfg.build_dir / "prune_report.json").read_text())
    assert report["target"]["reduction_asked"] == 0.3 and report["target"]["reduction_reached"] >= 0.3
    assert [r["round"] for r in report["rounds"]] == [1, 2] and report["rounds"][0]["goal"] < 0.3
    assert report["costs_after"]["latency"] < report["costs_before"]["latency"] and "cycle model" in \
        report["latency_note"]
    assert result.metrics["reductions"]["macs"] >= 0.3 and (cfg.build_dir / "prune_gamma_hist.png").is_file()
    with pytest.raises(PipelineError, match="prune.target_reduction.*cannot be reached"):
        prune_stage(cfg.with_values({"prune.target_reduction": 0.99, "prune.rounds": 1}))
    with pytest.raises(PipelineError, match="both"):
        prune_stage(cfg.with_values({"prune.sparsity": 0.3}))


@pytest.mark.slow  # about a minute on 2 shared cores
def test_compare_runs_the_four_variants_at_the_same_epochs(tmp_path, monkeypatch):
    from models.prune_compare import compare_stage
    from models.yolo_head import head_metadata
    from pipeline.config import load_config

    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(tmp_path / "build"))
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG.replace("prune: {target_reduction: 0.3, allocation: sensitivity, rounds: 2, "
                                   "finetune_epochs: 1, distill: 1.0}", "prune: {sparsity: 0.5, finetune_epochs: 3}"))
    cfg = load_config(path)
    cfg.build_dir.mkdir(parents=True)
    build_detector(cfg.values["model"], 1).save(cfg.build_dir / "model.keras")
    (cfg.build_dir / "model_meta.json").write_text(json.dumps(head_metadata(cfg.values["model"], ["face"],
                                                                             [[1, 1], [2, 2]])))
    result = compare_stage(cfg)
    assert set(result.metrics) == {"one_shot", "one_shot_distilled", "two_rounds", "two_rounds_distilled"}
    report = json.loads((cfg.build_dir / "prune_compare.json").read_text())["results"]
    two = json.loads((cfg.build_dir / "prune_report_two_rounds.json").read_text())
    assert [r["finetune_epochs"] for r in two["rounds"]] == [1, 2] and report["one_shot"]["finetune_epochs"] == 3
    assert two["filters_after"] == pytest.approx(report["one_shot"]["filters_after"], rel=0.1)
    assert (cfg.build_dir / "prune_compare.png").is_file() and (cfg.build_dir / "pruned_one_shot.keras").is_file()
    assert compare_stage(cfg).skipped


def test_settings_that_cannot_go_together_are_refused_by_field(tmp_path):
    from dataclasses import replace

    from models.prune_stage import check_settings, round_epochs, source_model, tagged
    from pipeline.config import load_config

    defaults = load_config(None).prune
    with pytest.raises(PipelineError, match="prune.sparsity.*nothing to prune"):
        check_settings(defaults)
    with pytest.raises(PipelineError, match="prune.target_reduction.*both"):
        check_settings(replace(defaults, sparsity=0.3, target_reduction=0.4))
    with pytest.raises(PipelineError, match="prune.target_reduction.*global_gamma needs a global target"):
        check_settings(replace(defaults, sparsity=0.3, allocation="global_gamma"))
    check_settings(replace(defaults, target_reduction=0.4, allocation="sensitivity"))
    path = tmp_path / "bad.yaml"
    path.write_text("prune: {target_metric: flops}\n")
    with pytest.raises(PipelineError, match="prune.target_metric"):
        load_config(path)
    path.write_text("prune: {target_reduction: 1.0}\n")
    with pytest.raises(PipelineError, match="prune.target_reduction"):
        load_config(path)
    path.write_text("model: {task: recognizer}\n")  # recognizers prune too; any model needs training first
    with pytest.raises(PipelineError, match="trained model not found"):
        source_model(load_config(path))
    assert round_epochs(5, 2) == [2, 3] and round_epochs(5, 1) == [5] and round_epochs(1, 2) == [0, 1]
    assert tagged("pruned.keras", "two_rounds") == "pruned_two_rounds.keras" and tagged("a.json", "") == "a.json"
