"""The train stage: budget check, anchors, tf.data, YOLOv2 loss, cosine schedule with warm-up, Keras fit with
best-val-AP checkpoint, early stop, resume after an interrupt, CSV log and PNG curves; seeded."""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from models.anchors import dataset_anchors
from models.budget import check_budget
from models.data import load_records
from models.distribute import Distribution, GlobalBatchMean, training_distribution
from models.evaluate import load_eval_set
from models.pipeline import detection_dataset
from models.prune_gamma import add_bn_l1, all_gammas, write_gamma_histogram
from models.train_callbacks import VAL_METRIC, CurvesPlot, TimeLimit, ValidationAP, plot_training_curves, read_log
from models.yolo_head import build_detector, head_metadata
from models.yolo_loss import YoloV2Loss
from models.yolo_targets import pack_targets
from pipeline.atomic import write_json
from pipeline.config import Config
from pipeline.config_schema import TrainSection
from pipeline.stage import StageResult, run_stage

MODEL_NAME, META_NAME, LOG_NAME, CURVES_NAME, METRICS_NAME, BACKUP_DIR = (
    "model.keras", "model_meta.json", "train_log.csv", "train_curves.png", "train_metrics.json", "train_backup")
GAMMA_PNG, GAMMA_JSON = "gamma_hist.png", "gamma_hist.json"
# how progress is shown, and over how many devices the same training runs (train.distribute computes what one
# device computes, up to the order of float additions), do not change the model; the learning-rate factor that
# train.lr_scaling gives is recorded as learning_rate_factor where it is not 1
DISPLAY_ONLY = ("quiet", "distribute", "devices", "lr_scaling")


def hashed_train_settings(train_cfg: dict[str, Any], distribution: Distribution | None = None) -> dict[str, Any]:
    """The train settings a train stage's manifest records: without display-only keys, without bn_l1 while it is 0,
    and with the learning-rate factor only where it is not 1 (so models trained before those keys existed stay
    current)."""
    hashed = {k: v for k, v in train_cfg.items() if k not in DISPLAY_ONLY and not (k == "bn_l1" and not v)}
    if distribution is not None and distribution.lr_factor != 1:
        hashed["learning_rate_factor"] = distribution.lr_factor
    return hashed


def gamma_outputs(cfg: Config) -> list:
    """The gamma histogram (PNG, JSON) a sparsity-trained model (train.bn_l1 > 0) gets beside it, else nothing."""
    return [cfg.build_dir / GAMMA_PNG, cfg.build_dir / GAMMA_JSON] if cfg.train.bn_l1 else []


def write_trained_gammas(cfg: Config, model_path: Path) -> None:
    """The |gamma| histogram of the saved sparsity-trained model (nothing when train.bn_l1 is 0)."""
    outputs = gamma_outputs(cfg)
    if outputs:
        model = keras.models.load_model(model_path, compile=False, safe_mode=False)
        write_gamma_histogram({"trained": all_gammas(model)}, *outputs,
                              title=f"BN |gamma| after sparsity training (train.bn_l1 = {cfg.train.bn_l1:g})")


def learning_rate_schedule(train: TrainSection, steps_per_epoch: int, factor: float = 1.0
                           ) -> keras.optimizers.schedules.CosineDecay:
    """Linear warm-up from lr/100 to lr over warmup_epochs, then cosine decay to lr/100 at the last epoch; lr is
    train.learning_rate times `factor` (the distribution's learning-rate factor, 1 on one device)."""
    lr = train.learning_rate * factor
    warmup = train.warmup_epochs * steps_per_epoch
    total = train.epochs * steps_per_epoch
    return keras.optimizers.schedules.CosineDecay(lr / 100, decay_steps=max(1, total - warmup), alpha=0.01,
                                                  warmup_target=lr, warmup_steps=warmup)


def train_dataset(records, input_size: tuple[int, int], train: TrainSection) -> tf.data.Dataset:
    """Augmented, shuffled batches of (images, packed targets (B, M, 5)) for Keras fit."""
    dataset = detection_dataset(records, input_size, train.batch_size, augment=train.augment, seed=train.seed,
                                max_boxes=train.max_boxes)
    return dataset.map(lambda images, target: (images, pack_targets(target["boxes"], target["labels"])))


def detector_loss(cfg: Config, anchors: np.ndarray) -> YoloV2Loss:
    """The YOLOv2 loss with the config's term weights, ignore threshold and rescoring."""
    weights = cfg.train.loss_weights
    return YoloV2Loss(anchors, len(cfg.dataset.classes), coord=weights.coord, obj=weights.obj, noobj=weights.noobj,
                      cls=weights.class_, ignore_thresh=cfg.train.ignore_thresh, rescore=cfg.train.rescore)


def compile_detector(cfg: Config, anchors: np.ndarray, steps_per_epoch: int,
                     distribution: Distribution | None = None) -> keras.Model:
    """Build the configured detector and compile it with AdamW on the schedule and the YOLOv2 loss; call it inside
    `distribution`'s scope (with more than one replica: a global-batch mean loss, synchronized BatchNormalization
    and clipping of the summed gradient, see models/distribute.py)."""
    train = cfg.train
    model = build_detector({**cfg.values["model"], "anchors": anchors.tolist()}, len(cfg.dataset.classes))
    loss = detector_loss(cfg, anchors)
    schedule = learning_rate_schedule(train, steps_per_epoch, distribution.lr_factor if distribution else 1.0)
    if distribution is not None and distribution.distributed:
        optimizer = distribution.optimizer(schedule, train.weight_decay, 10.0)
        loss = GlobalBatchMean(loss)
        distribution.prepare(model)
    else:
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=train.weight_decay, clipnorm=10.0)
    if train.bn_l1:
        add_bn_l1(model, train.bn_l1)
    model.compile(optimizer=optimizer, loss=loss)
    return model


def fit_detector(cfg: Config, anchors: np.ndarray, resume: bool, distribution: Distribution | None = None
                 ) -> dict[str, Any]:
    """Train and write build/<config>/model.keras (best val AP), model_meta.json, the CSV log and PNG curves."""
    distribution = distribution or training_distribution(cfg.train, cfg.path)
    train, classes, input_size = cfg.train, list(cfg.dataset.classes), cfg.model.input_size
    build = cfg.build_dir
    build.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(train.seed)
    train_records, val_records = load_records(cfg, "train"), load_records(cfg, "val")
    steps = math.ceil(len(train_records) / train.batch_size)
    log_path, backup = build / LOG_NAME, build / BACKUP_DIR
    # Keras deletes the backup when fit completes, so one exists only after an interrupted run
    if not (resume and (backup / "training_metadata.json").is_file()):
        shutil.rmtree(backup, ignore_errors=True)
        log_path.unlink(missing_ok=True)
    resumed_from = len(read_log(log_path))
    if distribution.kind != "none":
        print(distribution.describe(), flush=True)
    with distribution.scope():
        model = compile_detector(cfg, anchors, steps, distribution)
    write_json(build / META_NAME, head_metadata({**cfg.values["model"], "anchors": anchors.tolist()}, classes, anchors))
    validation = ValidationAP(load_eval_set(val_records, input_size), anchors, classes, input_size,
                              cfg.deploy.nms_iou, cfg.deploy.score_threshold, build / MODEL_NAME, log_path)
    time_limit = TimeLimit(train.time_limit_minutes)
    callbacks = [
        validation,
        keras.callbacks.BackupAndRestore(str(backup)),
        keras.callbacks.EarlyStopping(VAL_METRIC, mode="max", patience=train.patience, verbose=1),
        time_limit,
        keras.callbacks.CSVLogger(str(log_path), append=True),
        CurvesPlot(log_path, build / CURVES_NAME),
        *distribution.callbacks(),
    ]
    distribution.keep_epoch_order(model, train_dataset(train_records, input_size, train))
    started = time.monotonic()
    history = model.fit(train_dataset(train_records, input_size, train), epochs=train.epochs,
                        callbacks=callbacks, shuffle=False, verbose=2 if train.quiet else "auto")
    seconds = time.monotonic() - started
    rows = read_log(log_path)
    plot_training_curves(rows, build / CURVES_NAME)
    write_trained_gammas(cfg, build / MODEL_NAME)
    epochs_run = len(history.history.get("loss", []))
    metrics = {
        "best_val_ap50": round(validation.best, 4),
        "best_epoch": int(max(rows, key=lambda r: r.get(VAL_METRIC, -1))["epoch"]) + 1 if rows else 0,
        "epochs_run": epochs_run, "epochs_total": len(rows), "resumed_from_epoch": resumed_from,
        "stopped_by_time_limit": time_limit.stopped_early, "train_seconds": round(seconds, 1),
        "train_images_per_second": round(epochs_run * len(train_records) / seconds, 2) if seconds else 0.0,
        "train_images": len(train_records), "val_images": len(val_records),
        **(distribution.metrics() if distribution.distributed else {}),
    }
    write_json(build / METRICS_NAME, metrics)
    return metrics


def train_stage(cfg: Config, force: bool = False, resume: bool = True) -> StageResult:
    """`invoke train`: refuse an over-budget model first, then train (skipped when nothing changed)."""
    distribution = training_distribution(cfg.train, cfg.path)  # first: multi_worker starts before any TF op
    budget = check_budget(cfg.values["model"], len(cfg.dataset.classes), cfg.train.budget_mib)
    print(f"{cfg.model.family} width {cfg.model.width:g}: {budget.params:,} parameters, "
          f"{budget.macs / 1e6:.1f} M MACs, {budget.uint8_mib:.3f} MiB at uint8 (budget {cfg.train.budget_mib:g})")
    anchors = dataset_anchors(cfg)
    build = cfg.build_dir
    data_inputs = [p for p in (cfg.resolve_path(cfg.dataset.train), cfg.resolve_path(cfg.dataset.val)) if p is not None]
    params = {"dataset": cfg.values["dataset"], "model": cfg.values["model"],
              "train": hashed_train_settings(cfg.values["train"], distribution), "anchors": anchors.tolist()}
    outputs = [build / MODEL_NAME, build / META_NAME, build / LOG_NAME, build / CURVES_NAME, *gamma_outputs(cfg)]
    return run_stage(build, "train", inputs=data_inputs, params=params, outputs=outputs, force=force,
                       work=lambda: {**fit_detector(cfg, anchors, resume, distribution), "budget": budget.as_dict()},
                       tools=["tensorflow", "keras"])


def format_train(metrics: dict[str, Any]) -> str:
    """The train metrics as a short report."""
    return (f"best val AP@0.5 {metrics.get('best_val_ap50', 0):.4f} at epoch {metrics.get('best_epoch')}; "
            f"{metrics.get('epochs_run')} epochs in {metrics.get('train_seconds')} s "
            f"({metrics.get('train_images_per_second')} images/s)")
