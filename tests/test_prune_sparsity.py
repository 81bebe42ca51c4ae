"""Sparsity training (train.bn_l1): the L1 penalty on BN gammas reaches the loss, shrinks the gammas, leaves saved
models and old manifests alone, and the |gamma| histogram is written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.prune_gamma import add_bn_l1, all_gammas, write_gamma_histogram
from models.train import hashed_train_settings
from models.yolo_head import build_detector
from pipeline.config import load_config
from pipeline.errors import PipelineError


def _model():
    import keras

    keras.utils.set_random_seed(1)
    return build_detector({"family": "tiny", "width": 0.0625, "input_size": [128, 128], "num_anchors": 2,
                           "anchors": None}, 1)


def test_the_penalty_is_lambda_times_the_sum_of_gammas_and_is_not_saved(tmp_path):
    import keras

    model = _model()
    layers = add_bn_l1(model, 1e-3)
    assert layers == len([x for x in model.layers if isinstance(x, keras.layers.BatchNormalization)]) > 3
    total = float(sum(np.asarray(loss) for loss in model.losses))
    assert total == pytest.approx(1e-3 * all_gammas(model).sum(), rel=1e-5)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", safe_mode=False)
    assert not again.losses


def test_the_penalty_drives_gammas_down_in_training():
    import keras

    def sum_after_steps(strength: float) -> float:
        model = _model()
        if strength:
            add_bn_l1(model, strength)
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
        x = np.random.default_rng(0).uniform(0, 1, (8, 128, 128, 3)).astype(np.float32)
        model.fit(x, np.zeros((8, *model.output_shape[1:]), np.float32), epochs=3, batch_size=8, verbose=0)
        return float(all_gammas(model).sum())

    assert sum_after_steps(2.0) < 0.85 * sum_after_steps(0.0)


def test_a_model_without_batch_norm_is_refused_by_name():
    import keras

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="plain")(inputs), name="nobn")
    with pytest.raises(PipelineError, match="train.bn_l1.*nobn"):
        add_bn_l1(model, 1e-4)


def test_histogram_png_and_json(tmp_path):
    rng = np.random.default_rng(0)
    before, after = rng.uniform(0.5, 1.5, 200), np.concatenate([rng.uniform(0, 0.01, 150), rng.uniform(0.5, 1, 50)])
    write_gamma_histogram({"before": before, "after": after}, tmp_path / "g.png", tmp_path / "g.json", "t")
    report = json.loads((tmp_path / "g.json").read_text())
    assert sum(report["series"]["before"]["counts"]) == 200
    assert report["series"]["after"]["share_below_10pct_of_max"] == pytest.approx(0.75)
    assert report["series"]["before"]["share_below_10pct_of_max"] == 0
    assert (tmp_path / "g.png").stat().st_size > 1000


def test_bn_l1_is_validated_and_left_out_of_the_manifest_while_zero(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: {bn_l1: -1}\n")
    with pytest.raises(PipelineError, match="train.bn_l1"):
        load_config(path)
    train = load_config(None).values["train"]
    assert "bn_l1" not in hashed_train_settings(train) and "quiet" not in hashed_train_settings(train)
    assert hashed_train_settings({**train, "bn_l1": 1e-4})["bn_l1"] == 1e-4


@pytest.mark.slow  # about 40 s on 2 shared cores
def test_sparsity_training_writes_the_gamma_histogram(tmp_path, monkeypatch):
    from models.train import train_stage

    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(tmp_path / "build"))
    path = tmp_path / "l1.yaml"
    path.write_text("dataset:\n  format: synthetic\n  synthetic: {train_count: 8, val_count: 4, size: [160, 128]}\n"
                    "model: {family: tiny, width: 0.0625, input_size: [128, 128], num_anchors: 3}\n"
                    "train: {epochs: 1, batch_size: 4, warmup_epochs: 0, quiet: true, bn_l1: 0.01}\n")
    cfg = load_config(path)
    train_stage(cfg)
    report = json.loads((cfg.build_dir / "gamma_hist.json").read_text())
    assert report["series"]["trained"]["channels"] > 0 and "bn_l1 = 0.01" in report["title"]
    assert (cfg.build_dir / "gamma_hist.png").is_file()
    assert train_stage(cfg).skipped
