"""The prune stage: model.keras -> remove prune.sparsity of every conv's filters -> fine-tune -> pruned.keras,
with the val AP before pruning, right after it and after fine-tuning in prune_report.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.data import load_records
from models.evaluate import collect_results, keras_predictor, load_eval_set, model_anchors
from models.metrics import evaluate_results
from models.prune import filter_scores, keep_masks, prune_model
from pipeline.atomic import atomic_path, write_json
from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.stage import StageResult, run_stage

SOURCE_NAME, PRUNED_NAME, REPORT_NAME, META_NAME = "model.keras", "pruned.keras", "prune_report.json", "model_meta.json"


def _val_ap(model, cfg: Config, data, anchors: np.ndarray, classes: list[str]) -> float:
    input_size = tuple(cfg.values["model"]["input_size"])
    results = collect_results(keras_predictor(model), data, anchors, len(classes), input_size,
                              float(cfg.values["deploy"]["nms_iou"]))
    return round(float(evaluate_results(results, classes, float(cfg.values["deploy"]["score_threshold"]))["ap50"]), 4)


def fine_tune(model, cfg: Config, anchors: np.ndarray, epochs: int, learning_rate: float) -> None:
    """A few epochs of the training recipe at a low constant learning rate, to recover from pruning."""
    import keras

    from models.train import detector_loss, train_dataset

    train_cfg = cfg.values["train"]
    keras.utils.set_random_seed(int(train_cfg["seed"]))
    records = load_records(cfg, "train")
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=float(train_cfg["weight_decay"]),
                                                   clipnorm=10.0), loss=detector_loss(cfg, anchors))
    model.fit(train_dataset(records, tuple(cfg.values["model"]["input_size"]), train_cfg), epochs=epochs,
              verbose=2 if train_cfg["quiet"] else "auto")


def prune_and_finetune(cfg: Config, source: Path) -> dict[str, Any]:
    from models.yolo_head import load_detector

    settings = cfg.values["prune"]
    build = cfg.build_dir
    anchors, classes = model_anchors(build / META_NAME)
    model = load_detector(source)
    masks = keep_masks(filter_scores(model), float(settings["sparsity"]), int(settings["min_filters"]))
    pruned, summary = prune_model(model, masks)
    data = load_eval_set(load_records(cfg, "val"), tuple(cfg.values["model"]["input_size"]))
    report: dict[str, Any] = {"sparsity": settings["sparsity"], **summary.as_dict(),
                              "val_ap50_before": _val_ap(model, cfg, data, anchors, classes),
                              "val_ap50_pruned": _val_ap(pruned, cfg, data, anchors, classes)}
    epochs = int(settings["finetune_epochs"])
    if epochs > 0:
        fine_tune(pruned, cfg, anchors, epochs, float(cfg.values["train"]["learning_rate"])
                  * float(settings["finetune_lr_scale"]))
    report["val_ap50_finetuned"] = _val_ap(pruned, cfg, data, anchors, classes)
    report["finetune_epochs"] = epochs
    with atomic_path(build / PRUNED_NAME) as tmp:
        pruned.save(tmp)
    write_json(build / REPORT_NAME, report)
    return {k: v for k, v in report.items() if k != "per_layer"}


def prune_stage(cfg: Config, force: bool = False) -> StageResult:
    """`invoke prune`: skipped when model.keras and the prune settings are unchanged."""
    if float(cfg.values["prune"]["sparsity"]) <= 0:
        raise PipelineError("prune.sparsity is 0, so there is nothing to prune", field="prune.sparsity",
                            expected="a fraction such as 0.3 (--sparsity 0.3); export uses model.keras meanwhile")
    build = cfg.build_dir
    source = build / SOURCE_NAME
    if not source.is_file():
        raise PipelineError("trained model not found", path=source, expected="run `invoke train` first")
    params = {"prune": cfg.values["prune"], "train": cfg.values["train"], "dataset": cfg.values["dataset"]}
    return run_stage(build, "prune", inputs=[source, build / META_NAME], params=params,
                     outputs=[build / PRUNED_NAME, build / REPORT_NAME], work=lambda: prune_and_finetune(cfg, source),
                     force=force, tools=["tensorflow-cpu", "keras"])


def format_prune(metrics: dict[str, Any]) -> str:
    return (f"filters {metrics['filters_before']} -> {metrics['filters_after']}, parameters "
            f"{metrics['params_before']:,} -> {metrics['params_after']:,}; val AP@0.5 {metrics['val_ap50_before']:.3f} "
            f"-> {metrics['val_ap50_pruned']:.3f} pruned -> {metrics['val_ap50_finetuned']:.3f} after "
            f"{metrics['finetune_epochs']} fine-tune epochs")
