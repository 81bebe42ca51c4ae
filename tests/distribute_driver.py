"""Run `invoke train` stages in a process whose CPU is split into logical devices, for tests/test_train_distribute.py
and the scale-out measurement: logical devices can only be configured before TensorFlow runs anything, hence a
process of its own (one process for several runs saves TensorFlow's start-up).

    python -m tests.distribute_driver SPEC.json OUT.json

SPEC: {"cpus": 2, "reduction_checks": false, "runs": [{"name": ..., "config": PATH, "build_root": PATH,
"set": {"train.distribute": ...}, "interrupt_after_epoch": 0}, ...]}. OUT gets, per run name: the stage's metrics,
the loss after every training step (Keras' running mean over the epoch, as the progress bar shows it) and the time
it ended, the CSV log's rows, the wall time and whether the model file records a BatchNormalization sync. With
interrupt_after_epoch N the run stops with KeyboardInterrupt after epoch N, as a Ctrl-C does, leaving the
BackupAndRestore checkpoint behind for the next run with the same build root.
reduction_checks: also check the reductions on small numbers (reduction_checks below)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())

    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(spec["cpus"]))

    import keras

    from models import distribute, train_callbacks
    from models.train_callbacks import read_log
    from pipeline.config import load_config

    steps: list[float] = []
    times: list[float] = []
    interrupt = {"after": 0}

    class StepLosses(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            steps.append(float(logs["loss"]))
            times.append(time.perf_counter())

    original_callbacks, original_plot = distribute.Distribution.callbacks, train_callbacks.CurvesPlot.on_epoch_end
    distribute.Distribution.callbacks = lambda self: [StepLosses(), *original_callbacks(self)]

    def plot_then_maybe_interrupt(self, epoch, logs=None):
        original_plot(self, epoch, logs)
        if epoch + 1 == interrupt["after"]:
            raise KeyboardInterrupt

    train_callbacks.CurvesPlot.on_epoch_end = plot_then_maybe_interrupt
    out: dict = {"devices": [d.name for d in tf.config.list_logical_devices("CPU")]}
    if spec.get("reduction_checks"):
        out["reduction_checks"] = reduction_checks()
    for run in spec["runs"]:
        steps.clear()
        times.clear()
        interrupt["after"] = int(run.get("interrupt_after_epoch", 0))
        os.environ["PIPELINE_BUILD_ROOT"] = run["build_root"]
        cfg = load_config(run["config"], run.get("set", {}))
        if cfg.model.task == "recognizer":
            from models.recognizer.train import train_recognizer_stage as stage
        else:
            from models.train import train_stage as stage
        result: dict = {}
        started = time.monotonic()
        try:
            result["metrics"] = stage(cfg, force=True, resume=True).metrics
        except KeyboardInterrupt:
            result["interrupted"] = True
        result["seconds"] = round(time.monotonic() - started, 2)
        result["step_losses"] = list(steps)
        result["step_end_times"] = list(times)
        result["epochs"] = read_log(cfg.build_dir / "train_log.csv")
        model_path = cfg.build_dir / "model.keras"
        if model_path.is_file():
            model = keras.models.load_model(model_path, compile=False, safe_mode=False)
            result["model_synchronized_bn"] = any(layer.synchronized for layer in distribute.nested_batch_norms(model))
        out[run["name"]] = result
    Path(argv[1]).write_text(json.dumps(out, indent=1, default=str))
    return 0


def reduction_checks() -> dict:
    """The reductions of models/distribute.py on two replicas against one device, on small numbers where the
    answer is known: the recognizer's loss shares when the replicas hold unequal numbers of labelled samples, Keras'
    sum of the replicas' gradients, and AdamW's clipnorm on a gradient that only the sum pushes over the norm."""
    import keras
    import numpy as np
    import tensorflow as tf

    from models.distribute import SummedClipAdamW, replica_share, sum_over_replicas, training_distribution
    from models.recognizer.losses import classification_loss, distillation_loss
    from pipeline.config_schema import TrainSection

    # the strategy training uses (two MirroredStrategy objects on the same devices would mix their collectives)
    strategy = training_distribution(TrainSection(distribute="mirrored", devices=("/cpu:0", "/cpu:1"),
                                                  batch_size=4)).strategy
    rng = np.random.default_rng(3)
    logits = tf.constant(rng.normal(size=(8, 5)), tf.float32)
    labels = tf.constant([0, -1, -1, -1, 1, 2, 3, 4], tf.int32)  # 1 labelled sample on replica 0, 4 on replica 1
    student, teacher = (tf.constant(rng.normal(size=(8, 16)), tf.float32) for _ in range(2))
    has_teacher = tf.constant([True, True, True, False, False, False, False, True])

    def halves(*tensors):
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tuple(t[4 * ctx.replica_id_in_sync_group:4 * ctx.replica_id_in_sync_group + 4]
                              for t in tensors))

    def shares(logit, y, s, t, h):
        class_share, distill_share = classification_loss(logit, y), distillation_loss(s, t, h)
        return class_share, distill_share, sum_over_replicas(class_share), replica_share(tf.constant(6.0))

    class_share, distill_share, class_logged, penalty = strategy.run(
        shares, args=halves(logits, labels, student, teacher, has_teacher))
    total = lambda v: float(strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None))  # noqa: E731
    result = {"class_one_device": float(classification_loss(logits, labels)), "class_two_replicas": total(class_share),
              "class_logged_per_replica": [float(v) for v in strategy.experimental_local_results(class_logged)],
              "distill_one_device": float(distillation_loss(student, teacher, has_teacher)),
              "distill_two_replicas": total(distill_share), "penalty_two_replicas": total(penalty)}

    # one fit step of w * x against 0 (mean squared error, x = 1, w = 1: gradient 2 over the global batch of 4);
    # epsilon 100 makes Adam's step about lr * gradient / 100, so the clipping (norm 1) shows in one step
    x, y = np.ones((4, 1), np.float32), np.zeros((4, 1), np.float32)
    optimizers = {"sgd": lambda: keras.optimizers.SGD(0.1),
                  "summed_clip": lambda: SummedClipAdamW(0.1, epsilon=100.0, weight_decay=0.0, clipnorm=1.0),
                  "keras_clip": lambda: keras.optimizers.AdamW(0.1, epsilon=100.0, weight_decay=0.0, clipnorm=1.0)}
    for where, on in (("one_device", tf.distribute.get_strategy()), ("two_replicas", strategy)):
        for name, make in optimizers.items():
            with on.scope():
                model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False,
                                                                                kernel_initializer="ones")])
                model.compile(optimizer=make(), loss="mse")
            model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(4), epochs=1, verbose=0)
            result[f"{name}_{where}"] = float(model.get_weights()[0][0, 0])
    return result


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
