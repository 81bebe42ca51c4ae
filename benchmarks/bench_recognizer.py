"""The recognizer comparison of issue #12: every configs/compare_recognizer/*.yaml (from scratch or distilled from the
dlib teacher; softmax / CosFace / ArcFace or no class loss; both KPU backbones within the same 1 MiB kmodel budget;
each with its own short schedule, recorded in the result) trained from scratch into build/bench/stages/<its name>/,
then the Keras embedder on LFW View 2 dev folds and classroom identification, with the teacher on the same LFW pairs
as the anchor. Hours on 2 shared cores, so it runs only when asked for (`invoke bench --only recognizer`); skipped
with a reason without the CelebA-299 or LFW data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.config import REPO_ROOT, SHARED_DATA, load_config
from pipeline.plotting import new_figure, save_figure

COMPARE_DIR = REPO_ROOT / "configs" / "compare_recognizer"
ON_REQUEST_ONLY = True


def _train_and_evaluate(config_path: Path) -> dict[str, Any]:
    """Train one comparison config from scratch, then evaluate its Keras embedder (no teacher: it is one row)."""
    from deploy.evaluate import evaluate_recognizer_stage
    from models.recognizer.train import train_recognizer_stage

    cfg = load_config(config_path, {"train.quiet": True})
    metrics = train_recognizer_stage(cfg, force=True, resume=False).metrics
    report = evaluate_recognizer_stage(cfg, runtimes=("keras",), teacher=False)
    keras_row = report["runtimes"]["keras"]
    model, rec = cfg.model, cfg.recognizer
    lfw = keras_row["lfw"]
    classroom = keras_row["classroom"] or {}
    return {"config": str(config_path.relative_to(REPO_ROOT)), "family": model.family, "width": model.width,
            "input_size": model.input_size[0], "loss": rec.loss, "class_weight": rec.class_weight,
            "distill": rec.distill, "distill_weight": rec.distill_weight,
            "uint8_mib_estimate": metrics["budget"]["uint8_mib"], "macs_m": metrics["budget"]["macs_m"],
            "epochs_scheduled": cfg.train.epochs, "epochs": metrics["epochs_run"],
            "train_seconds": metrics["train_seconds"], "train_images_per_second": metrics["train_images_per_second"],
            "best_held_back_accuracy": metrics["best_val_accuracy"],
            "lfw_accuracy": round(lfw["accuracy_mean"], 4), "lfw_accuracy_std": round(lfw["accuracy_std"], 4),
            "lfw_auc": round(lfw["roc_auc"], 4),
            "lfw_tar_at_far": {str(t["far"]): round(t["tar"], 4) for t in lfw["tar_at_far"]},
            "classroom_top1": {count: round(v["top1_accuracy"], 4) for count, v in classroom.items()},
            "classroom_tpir_at_fpir_1pct": {count: round(v["tpir"], 4) for count, v in classroom.items()}}


def _teacher_row(config_path: Path) -> dict[str, Any]:
    """The dlib teacher on the same LFW dev pairs (the anchor; from the teacher cache after the first run)."""
    from models.recognizer.evaluate import lfw_metrics, lfw_set, teacher_lfw
    from models.recognizer.settings import RecognizerSettings

    cfg = load_config(config_path)
    data = lfw_set(RecognizerSettings.from_config(cfg), cfg.resolve_path(cfg.recognizer.lfw),
                   cfg.recognizer.eval_pairs_per_fold)
    metrics, _ = lfw_metrics(teacher_lfw(cfg, data), data)
    return {"model": "dlib_face_recognition_resnet_model_v1", "lfw_accuracy": round(metrics["accuracy_mean"], 4),
            "lfw_accuracy_std": round(metrics["accuracy_std"], 4), "lfw_auc": round(metrics["roc_auc"], 4)}


def _plot(rows: dict[str, dict[str, Any]], teacher: dict[str, Any], png: Path) -> None:
    fig, ax = new_figure(8, 0.5 * len(rows) + 2)
    names = sorted(rows, key=lambda name: rows[name]["lfw_accuracy"])
    ax.barh(names, [rows[name]["lfw_accuracy"] for name in names], color="tab:blue")
    for y, name in enumerate(names):
        row = rows[name]
        ax.text(row["lfw_accuracy"] + 0.003, y, f"{row['lfw_accuracy']:.3f}  ({row['epochs']} ep, "
                f"{row['train_seconds'] / 60:.0f} min)", va="center", fontsize=8)
    ax.axvline(teacher["lfw_accuracy"], color="tab:red", linestyle="--",
               label=f"dlib teacher {teacher['lfw_accuracy']:.3f}")
    ax.set_xlabel("LFW View 2 dev accuracy (Keras, threshold per fold from the others)")
    ax.set_xlim(min(0.5, min(row["lfw_accuracy"] for row in rows.values()) - 0.05), 1)
    ax.legend(loc="lower right")
    ax.set_title("Recognizers within a 1 MiB kmodel, short schedules")
    save_figure(fig, png)


def run(out_dir: Path) -> dict[str, Any]:
    """Train and evaluate each comparison config; tabulate LFW / classroom numbers with the teacher, plus a PNG."""
    missing = [name for name in ("celeba299", "lfw") if not (SHARED_DATA / name).is_dir()]
    if missing:
        return {"skipped": f"data absent: {', '.join(str(SHARED_DATA / name) for name in missing)}"}
    paths = sorted(COMPARE_DIR.glob("*.yaml"))
    rows = {path.stem: _train_and_evaluate(path) for path in paths}
    teacher = _teacher_row(paths[0])
    _plot(rows, teacher, out_dir / "recognizer.png")
    return {"configs": rows, "teacher": teacher, "note": "short schedules (epochs per row); 2 CPU cores shared with "
                                                         "other work, so seconds are not comparable across runs"}
