"""The recognizer's train stage: identity split, policy crops, optional teacher embeddings, a margin loss (+
distillation), best epoch by verification accuracy on held-back identities, resume, CSV log and PNG curves."""

from __future__ import annotations

import shutil
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from models.budget import check_budget
from models.data.problems import ProblemLog
from models.distribute import Distribution, replica_share, sum_over_replicas, training_distribution
from models.prune_gamma import add_bn_l1
from models.recognizer.augment import eval_images, roomy_policy, training_batches
from models.recognizer.embedder import build_embedder
from models.recognizer.faces import FaceItem, IdentitySplit, crop_faces
from models.recognizer.losses import MarginHead, classification_loss, distillation_loss
from models.recognizer.settings import RecognizerSettings
from models.recognizer.verification import verification_metrics
from models.train import gamma_outputs, hashed_train_settings, learning_rate_schedule, write_trained_gammas
from models.train_callbacks import CurvesPlot, TimeLimit, read_log, save_model_atomic
from pipeline.atomic import write_json
from pipeline.config import Config
from pipeline.stage import StageResult, run_stage

MODEL_NAME, META_NAME, LOG_NAME, CURVES_NAME, METRICS_NAME, BACKUP_DIR = (
    "model.keras", "model_meta.json", "train_log.csv", "train_curves.png", "train_metrics.json", "train_backup")
VAL_METRIC = "val_accuracy"
VAL_PAIRS = 3000  # same + different pairs of the held-back identities, drawn once (seeded)


class RecognizerTrainer(keras.Model):
    """The embedder with its training head; the train step adds the distillation term where a teacher is given.

    Under a distribution strategy each replica's loss is its share of the global batch's loss (the class and
    distillation means are over the global batch's samples, the weight penalty is divided by the replica count):
    Keras sums the replicas' gradients, so the step is the one-device step on the global batch. The logged losses
    are the shares summed over the replicas. On one replica the step is what it always was."""

    def __init__(self, embedder: keras.Model, head: MarginHead, distill_weight: float, class_weight: float = 1.0
                 ) -> None:
        super().__init__()
        self.embedder, self.head = embedder, head
        self.distill_weight, self.class_weight = float(distill_weight), float(class_weight)
        self.tracked = {name: keras.metrics.Mean(name=name) for name in ("loss", "class_loss", "distill_loss")}

    def call(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.embedder(images, training=training)

    @property
    def metrics(self) -> list:
        return list(self.tracked.values())

    def train_step(self, batch: dict) -> dict:
        with tf.GradientTape() as tape:
            embedding = self.embedder(batch["image"], training=True)
            class_loss = classification_loss(self.head(embedding, batch["label"]), batch["label"])
            distill = distillation_loss(embedding, batch["teacher"], batch["has_teacher"])
            loss = (self.class_weight * class_loss + self.distill_weight * distill
                    + replica_share(tf.add_n(self.embedder.losses or [0.0])))
        variables = self.embedder.trainable_variables + self.head.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        for name, value in (("loss", loss), ("class_loss", class_loss), ("distill_loss", distill)):
            self.tracked[name].update_state(sum_over_replicas(value))
        return {name: metric.result() for name, metric in self.tracked.items()}


def training_crops(settings: RecognizerSettings, log: ProblemLog
                   ) -> tuple[IdentitySplit, np.ndarray, list[FaceItem], np.ndarray]:
    """(identity split, wide uint8 crops of the training identities' and the unlabelled faces (roomy policy), their
    items, class index per crop (-1: unlabelled))."""
    split = settings.identity_split(log)
    wide, items = crop_faces(split.train + settings.unlabelled_faces(log), roomy_policy(settings.policy), log,
                             "train crops")
    index = {name: i for i, name in enumerate(split.classes)}
    labels = np.asarray([index.get(item.identity, -1) for item in items], np.int32)
    return split, wide, items, labels


def val_pairs(identities: list[str], seed: int, count: int = VAL_PAIRS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, same) index pairs over items of the given identities: half same-identity pairs, half different."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(identities)
    by_identity = {name: np.flatnonzero(labels == name) for name in sorted(set(identities))}
    groups = [idx for idx in by_identity.values() if len(idx) > 1]
    same = [tuple(rng.choice(groups[rng.integers(len(groups))], 2, replace=False)) for _ in range(count // 2)]
    different = []
    while len(different) < count - len(same):
        a, b = rng.integers(len(labels), size=2)
        if labels[a] != labels[b]:
            different.append((a, b))
    pairs = np.asarray(same + different)
    return pairs[:, 0], pairs[:, 1], np.arange(len(pairs)) < len(same)


def embed(model: keras.Model, images: np.ndarray, batch: int = 128) -> np.ndarray:
    """L2-normalised embeddings of float images."""
    out = np.concatenate([np.asarray(model(images[i:i + batch], training=False)) for i in range(0, len(images), batch)])
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def pair_verification(model: keras.Model, images: np.ndarray, pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
                      centred: bool = False) -> dict[str, Any]:
    """Verification metrics of the model on (a, b, same) pairs of the images, thresholds from 5 folds; `centred`:
    the embeddings centred by their own mean direction first (no labels used), as a centred recognizer deploys."""
    from models.recognizer.centre import mean_direction, normalised

    a, b, same = pairs
    emb = embed(model, images)
    if centred:
        emb = normalised(emb, mean_direction(emb))
    return verification_metrics(np.sum(emb[a] * emb[b], axis=1), same, np.arange(len(same)) % 5)


def held_back_set(val_items: list[FaceItem], settings: RecognizerSettings, seed: int, log: ProblemLog
                  ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """The held-back identities' policy crops (float model input) and the seeded verification pairs over them."""
    crops, items = crop_faces(val_items, settings.policy, log, "held-back crops")
    return eval_images(crops), val_pairs([item.identity for item in items], seed + 7)


class ValidationAccuracy(keras.callbacks.Callback):
    """After each epoch: verification accuracy on held-back identities' pairs (5-fold thresholds) into the logs;
    the best embedder so far is saved. A resumed run reads its best back from the CSV log."""

    def __init__(self, images: np.ndarray, pairs: tuple[np.ndarray, np.ndarray, np.ndarray], best_path, log_path):
        super().__init__()
        self.images, self.pairs, self.best_path, self.log_path = images, pairs, best_path, log_path
        self.best = -1.0

    def on_train_begin(self, logs=None) -> None:
        previous = [row[VAL_METRIC] for row in read_log(self.log_path) if VAL_METRIC in row]
        self.best = max(previous) if previous and self.best_path.is_file() else -1.0

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        metrics = pair_verification(self.model.embedder, self.images, self.pairs)
        logs[VAL_METRIC], logs["val_auc"] = metrics["accuracy_mean"], metrics["roc_auc"]
        if metrics["accuracy_mean"] > self.best:
            self.best = metrics["accuracy_mean"]
            save_model_atomic(self.model.embedder, self.best_path)
        print(f"\nepoch {epoch + 1}: held-back verification accuracy {metrics['accuracy_mean']:.4f} "
              f"(best {self.best:.4f}), AUC {metrics['roc_auc']:.4f}", flush=True)


def plot_recognizer_curves(rows: list[dict[str, float]], png_path) -> None:
    """Training losses (left, log scale) and held-back verification accuracy (right) per epoch."""
    from pipeline.plotting import new_figure, save_figure

    if not rows:
        return
    epochs = [row["epoch"] + 1 for row in rows]
    fig, ax = new_figure(7, 4.5)
    for key, colour in (("loss", "tab:blue"), ("class_loss", "tab:green"), ("distill_loss", "tab:purple")):
        ax.plot(epochs, [row.get(key, np.nan) for row in rows], color=colour, label=key)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(loc="lower left")
    right = ax.twinx()
    right.plot(epochs, [row.get(VAL_METRIC, np.nan) for row in rows], color="tab:red", label=VAL_METRIC)
    right.set_ylabel("held-back verification accuracy", color="tab:red")
    right.set_ylim(0.5, 1)
    save_figure(fig, png_path)


def fit_recognizer(cfg: Config, settings: RecognizerSettings, resume: bool,
                   distribution: Distribution | None = None) -> dict[str, Any]:
    """Train and write build/<config>/model.keras (the best embedder), its metadata, the CSV log and PNG curves."""
    train = cfg.train
    distribution = distribution or training_distribution(train, cfg.path)
    build = cfg.build_dir
    build.mkdir(parents=True, exist_ok=True)
    seed = train.seed
    keras.utils.set_random_seed(seed)
    log = ProblemLog()
    split, wide, train_items, labels = training_crops(settings, log)
    classes = split.classes
    teacher, has_teacher = settings.teacher_targets(train_items, build)
    batch = train.batch_size
    steps = max(1, len(wide) // batch)
    log_path, backup = build / LOG_NAME, build / BACKUP_DIR
    if not (resume and (backup / "training_metadata.json").is_file()):
        shutil.rmtree(backup, ignore_errors=True)
        log_path.unlink(missing_ok=True)
    resumed_from = len(read_log(log_path))
    if distribution.kind != "none":
        print(distribution.describe(), flush=True)
    size = settings.policy.size
    with distribution.scope():  # the model, its optimizer and its metrics
        embedder = build_embedder(cfg.values["model"], settings.embedding_size, settings.head_channels)
        if train.bn_l1:
            add_bn_l1(embedder, train.bn_l1)
        trainer = RecognizerTrainer(embedder, MarginHead(len(classes), settings.loss, settings.scale,
                                                         settings.margin, name="margin_head"),
                                    settings.distill_weight, settings.class_weight)
        trainer.head(trainer(tf.zeros((1, size, size, 3))), tf.zeros((1,), tf.int32))  # built before BackupAndRestore
        distribution.prepare(trainer)
        trainer.compile(optimizer=distribution.optimizer(learning_rate_schedule(train, steps, distribution.lr_factor),
                                                         train.weight_decay, 10.0))
    write_json(build / META_NAME, settings.metadata(classes))
    validation = ValidationAccuracy(*held_back_set(split.val, settings, seed, log), build / MODEL_NAME, log_path)
    time_limit = TimeLimit(train.time_limit_minutes)
    callbacks = [validation, keras.callbacks.BackupAndRestore(str(backup)),
                 keras.callbacks.EarlyStopping(VAL_METRIC, mode="max", patience=train.patience, verbose=1),
                 time_limit, keras.callbacks.CSVLogger(str(log_path), append=True),
                 CurvesPlot(log_path, build / CURVES_NAME, plot_recognizer_curves), *distribution.callbacks()]
    data = training_batches(wide, labels, teacher, has_teacher, size, batch, settings.gray_prob, seed)
    distribution.keep_epoch_order(trainer, training_batches(wide, labels, teacher, has_teacher, size, batch,
                                                            settings.gray_prob, seed))
    started = time.monotonic()
    history = trainer.fit(data, epochs=train.epochs, callbacks=callbacks, verbose=2 if train.quiet else "auto")
    seconds = time.monotonic() - started
    rows = read_log(log_path)
    plot_recognizer_curves(rows, build / CURVES_NAME)
    write_trained_gammas(cfg, build / MODEL_NAME)
    epochs_run = len(history.history.get("loss", []))
    log.warn()
    return {
        "best_val_accuracy": round(validation.best, 4),
        "best_epoch": int(max(rows, key=lambda r: r.get(VAL_METRIC, -1))["epoch"]) + 1 if rows else 0,
        "epochs_run": epochs_run, "epochs_total": len(rows), "resumed_from_epoch": resumed_from,
        "stopped_by_time_limit": time_limit.stopped_early, "train_seconds": round(seconds, 1),
        "train_images_per_second": round(epochs_run * steps * batch / seconds, 2) if seconds else 0.0,
        "train_images": int((labels >= 0).sum()), "unlabelled_images": int((labels < 0).sum()),
        "train_identities": len(classes), "val_identities": len(set(
            item.identity for item in split.val)), "stranger_identities": len({i.identity for i in split.strangers}),
        "teacher_targets": int(has_teacher.sum()), "problems": log.summary(),
        **(distribution.metrics() if distribution.distributed else {}),
    }


# recognizer keys that only stages after training read, so changing them keeps the trained model current
AFTER_TRAINING = ("centre_images", "flip_average")


def training_keys(cfg: Config) -> dict[str, Any]:
    """The recognizer section's values that training (and pruning's fine-tuning) depend on: all but AFTER_TRAINING."""
    return {key: value for key, value in cfg.values["recognizer"].items() if key not in AFTER_TRAINING}


def train_recognizer_stage(cfg: Config, force: bool = False, resume: bool = True) -> StageResult:
    """`invoke train` on a recognizer config: refuse an over-budget model first, then train (skipped when unchanged)."""
    settings = RecognizerSettings.from_config(cfg)
    distribution = training_distribution(cfg.train, cfg.path)  # first: multi_worker starts before any TF op
    budget = check_budget(cfg.values["model"], 0, cfg.train.budget_mib,
                          build=lambda m, _: build_embedder(m, settings.embedding_size, settings.head_channels))
    print(f"{cfg.model.family} recognizer width {cfg.model.width:g}: {budget.params:,} parameters, "
          f"{budget.macs / 1e6:.1f} M MACs, {budget.uint8_mib:.3f} MiB in the kmodel "
          f"(budget {cfg.train.budget_mib:g})")
    build = cfg.build_dir
    params = {"dataset": cfg.values["dataset"], "model": cfg.values["model"], "recognizer": training_keys(cfg),
              "train": hashed_train_settings(cfg.values["train"], distribution)}
    outputs = [build / MODEL_NAME, build / META_NAME, build / LOG_NAME, build / CURVES_NAME, *gamma_outputs(cfg)]
    stage = run_stage(build, "train", inputs=settings.input_paths(), params=params, outputs=outputs, force=force,
                      work=lambda: {**fit_recognizer(cfg, settings, resume, distribution), "budget": budget.as_dict()},
                      tools=["tensorflow", "keras"])
    write_json(build / METRICS_NAME, stage.metrics)
    return stage


def format_recognizer_train(metrics: dict[str, Any]) -> str:
    return (f"best held-back verification accuracy {metrics.get('best_val_accuracy', 0):.4f} at epoch "
            f"{metrics.get('best_epoch')}; {metrics.get('epochs_run')} epochs in {metrics.get('train_seconds')} s "
            f"({metrics.get('train_images_per_second')} images/s)")

