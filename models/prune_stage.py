"""The prune stages.

`prune`: model.keras -> in `prune.rounds` rounds: choose the filters to keep (a uniform `prune.sparsity`, or a
global `prune.target_metric` / `prune.target_reduction` by `prune.allocation`), rebuild, fine-tune (optionally
distilled from the unpruned model, `prune.distill`) -> pruned.keras, with prune_report.json (the validation metric
before, right after pruning and after fine-tuning each round; every cost before and after; the target asked and
reached) and the |gamma| histogram of the kept and removed channels. Detectors and recognizers alike: what differs
(the metric, the fine-tuning) comes from models/prune_task.py.

`prune_sensitivity`: the per-layer sensitivity curves (prune_sensitivity.json + .png), a stage of its own so a
target run with `prune.allocation: sensitivity` reuses them while model.keras is unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np

from models.keep_best import KeepBest
from models.prune import (
    batch_norm_after,
    filter_scores,
    keep_masks,
    prunable_convs,
    prune_model,
    prune_units,
    top_mask,
    unit_masks,
)
from models.prune_allocate import allocate
from models.prune_cost import ConvTime, model_cost
from models.prune_gamma import write_gamma_histogram
from models.prune_sensitivity import RATIOS, sensitivity_curves, write_sensitivity
from models.prune_task import META_NAME, prune_task
from models.recognizer.train import training_keys
from pipeline.atomic import atomic_path, write_json
from pipeline.config import Config
from pipeline.config_schema import PruneSection
from pipeline.errors import PipelineError
from pipeline.stage import StageResult, run_stage

SOURCE_NAME, PRUNED_NAME, REPORT_NAME = "model.keras", "pruned.keras", "prune_report.json"
SENSITIVITY_JSON, SENSITIVITY_PNG = "prune_sensitivity.json", "prune_sensitivity.png"
GAMMA_JSON, GAMMA_PNG = "prune_gamma_hist.json", "prune_gamma_hist.png"
LATENCY_NOTE = ("estimated K210 microseconds of the KPU convs from the compiler's cycle model (calibrated on published "
                "timings, hardware/k210_timings.json), not a board measurement")


def prunes(cfg: Config) -> bool:
    """Whether the config prunes (a uniform prune.sparsity or a global prune.target_reduction)."""
    return cfg.prune.sparsity > 0 or cfg.prune.target_reduction > 0


def all_costs(model: keras.Model, conv_time: ConvTime | None, fuse_leaky: bool) -> dict[str, float]:
    """Every target metric of the model (latency only with the cycle model)."""
    metrics = ["macs", "params", "kmodel_bytes"] + (["latency"] if conv_time else [])
    return {m: round(model_cost(model, m, conv_time, fuse_leaky), 1) for m in metrics}


def check_settings(settings: PruneSection) -> None:
    """Refuse prune settings that cannot go together, naming the field."""
    if settings.sparsity <= 0 and settings.target_reduction <= 0:
        raise PipelineError("prune.sparsity and prune.target_reduction are 0, so there is nothing to prune",
                            field="prune.sparsity", expected="a fraction such as 0.3 (--sparsity 0.3), or a global "
                            "target (--set prune.target_reduction=0.4); export uses model.keras meanwhile")
    if settings.sparsity > 0 and settings.target_reduction > 0:
        raise PipelineError("both a uniform prune.sparsity and a global prune.target_reduction are set",
                            field="prune.target_reduction", expected="one of them (the other 0)")
    if settings.allocation != "uniform" and settings.target_reduction <= 0:
        raise PipelineError(f"prune.allocation {settings.allocation} needs a global target",
                            field="prune.target_reduction", expected="a fraction such as 0.4 of prune.target_metric")


def _round_masks(model: keras.Model, cfg: Config, round_goal: float, reference: float, conv_time: ConvTime | None,
                 curves: dict[str, Any] | None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The masks of one round: the uniform sparsity share of this round, or the allocation reaching round_goal."""
    settings = cfg.prune
    scores = prune_units(model, filter_scores(model, settings.criterion))
    if settings.target_reduction <= 0:
        share = 1 - (1 - settings.sparsity) ** (1 / settings.rounds)
        return unit_masks(keep_masks(scores, share, settings.min_filters)), {"share": round(share, 4)}
    metric, fuse = settings.target_metric, cfg.compile.fuse_leaky
    chosen = allocate(model, scores, allocation=settings.allocation, reference=reference, reduction=round_goal,
                      cost=lambda m: model_cost(m, metric, conv_time, fuse), min_filters=settings.min_filters,
                      round_to=settings.round_to, curves=curves, criterion=settings.criterion)
    masks = unit_masks({u: top_mask(scores[u], k) for u, k in chosen.counts.items()})
    return masks, {"goal": round(round_goal, 4), "reached": round(chosen.reduction, 4), "knob": round(chosen.knob, 6)}


def round_epochs(total: int, rounds: int) -> list[int]:
    """prune.finetune_epochs split over the rounds (the last one takes the remainder), so one-shot and iterative
    runs fine-tune for as long."""
    return [total // rounds] * (rounds - 1) + [total // rounds + total % rounds]


def prune_and_finetune(cfg: Config, source: Path, conv_time: ConvTime | None = None, tag: str = "") -> dict[str, Any]:
    """Prune model.keras in rounds, fine-tune, write pruned{tag}.keras, its report and the gamma histogram; the
    report's metrics."""
    settings, build = cfg.prune, cfg.build_dir
    task = prune_task(cfg)
    original = task.load(source)
    fuse = cfg.compile.fuse_leaky
    metric_name, reduction = settings.target_metric, settings.target_reduction
    if reduction > 0:  # fail on an impossible setting before any evaluation
        model_cost(original, metric_name, conv_time, fuse)
    curves = read_curves(build) if settings.allocation == "sensitivity" else None
    before = all_costs(original, conv_time, fuse)
    reference = model_cost(original, metric_name, conv_time, fuse) if reduction > 0 else 0.0
    key = task.key
    report: dict[str, Any] = {"settings": cfg.values["prune"], "metric": {"key": key, "label": task.label},
                              f"{key}_before": task.metric(original), "costs_before": before, "rounds": []}
    rounds, epochs = settings.rounds, settings.finetune_epochs
    per_round = round_epochs(epochs, rounds)
    learning_rate = cfg.train.learning_rate * settings.finetune_lr_scale
    current = original
    for index in range(1, rounds + 1):
        goal = 1 - (1 - reduction) ** (index / rounds)
        masks, chosen = _round_masks(current, cfg, goal, reference, conv_time, curves)
        pruned, _ = prune_model(current, masks)
        entry = {"round": index, **chosen, f"{key}_pruned": task.metric(pruned),
                 "finetune_epochs": per_round[index - 1]}
        if per_round[index - 1] > 0:
            keep = KeepBest(pruned, task.metric, entry[f"{key}_pruned"])
            entry["finetune_loss"] = task.fine_tune(pruned, per_round[index - 1], learning_rate, original,
                                                    settings.distill, [keep])
            entry[f"finetune_{key}"] = [round(v, 4) for v in keep.scores]
            entry["kept_epoch"] = keep.best_epoch  # 0: fine-tuning never beat the pruned model
        entry[f"{key}_finetuned"] = task.metric(pruned)
        report["rounds"].append(entry)
        print(f"[prune] round {index}/{rounds}: {entry}", flush=True)
        current = pruned
    after = all_costs(current, conv_time, fuse)
    last = report["rounds"][-1]
    report.update(_summary(original, current), costs_after=after, finetune_epochs=epochs,
                  reductions={m: round(1 - after[m] / before[m], 4) for m in before},
                  **{f"{key}_pruned": last[f"{key}_pruned"], f"{key}_finetuned": last[f"{key}_finetuned"]})
    if reduction > 0:
        report["target"] = {"metric": metric_name, "reduction_asked": reduction,
                            "reduction_reached": report["reductions"][metric_name]}
    if conv_time is not None:
        report["latency_note"] = LATENCY_NOTE
    _write_gammas(original, current, build, tag)
    with atomic_path(build / tagged(PRUNED_NAME, tag)) as tmp:
        current.save(tmp)
    write_json(build / tagged(REPORT_NAME, tag), report)
    return {k: v for k, v in report.items() if k not in ("per_layer", "settings")}


def kept_counts(original: keras.Model, pruned: keras.Model) -> dict[str, int]:
    """Filters per prunable conv of the original that the pruned model still has."""
    return {layer.name: int(pruned.get_layer(layer.name).filters) for layer in prunable_convs(original)}


def _summary(original: keras.Model, pruned: keras.Model) -> dict[str, Any]:
    kept = kept_counts(original, pruned)
    per_layer = {name: (int(original.get_layer(name).filters), count) for name, count in kept.items()}
    return {"filters_before": sum(v[0] for v in per_layer.values()), "filters_after": sum(kept.values()),
            "params_before": int(original.count_params()), "params_after": int(pruned.count_params()),
            "per_layer": {k: list(v) for k, v in per_layer.items()}}


def tagged(name: str, tag: str) -> str:
    """pruned.keras -> pruned_<tag>.keras (a comparison variant's file); unchanged without a tag."""
    stem, _, suffix = name.partition(".")
    return f"{stem}_{tag}.{suffix}" if tag else name


def _write_gammas(original: keras.Model, pruned: keras.Model, build: Path, tag: str) -> None:
    """|gamma| before pruning, of the channels kept and removed (the highest |gamma| of each conv, as many as the
    pruned model has), and after it (the pruned, fine-tuned model's)."""
    norms, kept = batch_norm_after(original), kept_counts(original, pruned)
    if any(norm is None for norm in norms.values()):
        return
    kept_values, removed = [], []
    for name, norm in norms.items():
        gammas = np.sort(np.abs(norm.gamma.numpy()))[::-1]
        kept_values.append(gammas[:kept[name]])
        removed.append(gammas[kept[name]:])
    after = np.concatenate([np.abs(n.gamma.numpy()) for n in batch_norm_after(pruned).values() if n is not None])
    write_gamma_histogram({"before: kept": np.concatenate(kept_values), "before: removed": np.concatenate(removed),
                           "after pruning + fine-tuning": after},
                          build / tagged(GAMMA_PNG, tag), build / tagged(GAMMA_JSON, tag),
                          title="BN |gamma| of the prunable convs before and after pruning")


def read_curves(build: Path) -> dict[str, Any]:
    """The cached sensitivity curves (run the prune_sensitivity stage first)."""
    import json

    path = build / SENSITIVITY_JSON
    if not path.is_file():
        raise PipelineError("no sensitivity curves", path=path, field="prune.allocation",
                            expected="`invoke prune --sensitivity` first (a sensitivity target run does it)")
    return json.loads(path.read_text())


def source_model(cfg: Config) -> Path:
    """build/<config>/model.keras, or a PipelineError saying to train first."""
    source = cfg.build_dir / SOURCE_NAME
    if not source.is_file():
        raise PipelineError("trained model not found", path=source, expected="run `invoke train` first")
    return source


def recognizer_params(cfg: Config) -> dict[str, Any]:
    """What a recognizer's validation metric and fine-tuning also depend on (nothing more for a detector): not the
    keys only stages after training read."""
    if cfg.model.task != "recognizer":
        return {}
    return {"recognizer": training_keys(cfg), "seed": cfg.values["train"]["seed"]}


def sensitivity_stage(cfg: Config, force: bool = False) -> StageResult:
    """`invoke prune --sensitivity`: the per-unit curves of the validation metric (val AP@0.5, or a recognizer's
    held-back verification accuracy) against the share of filters removed, without fine-tuning (skipped while
    model.keras and the criterion are unchanged)."""
    build, source = cfg.build_dir, source_model(cfg)
    criterion = cfg.prune.criterion
    params = {"criterion": criterion, "ratios": list(RATIOS), "dataset": cfg.values["dataset"],
              "deploy": {k: cfg.values["deploy"][k] for k in ("nms_iou", "score_threshold")}, **recognizer_params(cfg)}

    def work() -> dict[str, Any]:
        task = prune_task(cfg)
        result = sensitivity_curves(task.load(source), task.metric, criterion)
        write_sensitivity(result, build / SENSITIVITY_PNG, build / SENSITIVITY_JSON, task.label)
        flat = {u: c["metric"][-1] for u, c in result["units"].items()}
        return {"baseline": result["baseline"], "units": len(result["units"]),
                "most_robust": max(flat, key=flat.get), "most_sensitive": min(flat, key=flat.get)}
    return run_stage(build, "prune_sensitivity", inputs=[source, build / META_NAME], params=params,
                     outputs=[build / SENSITIVITY_JSON, build / SENSITIVITY_PNG], work=work, force=force,
                     tools=["tensorflow-cpu", "keras"])


def stage_inputs(cfg: Config) -> tuple[list[Path], dict[str, Any]]:
    """The inputs and parameters of a pruning run (measuring the sensitivity curves first when it uses them)."""
    build = cfg.build_dir
    check_settings(cfg.prune)
    inputs = [source_model(cfg), build / META_NAME]
    if cfg.prune.allocation == "sensitivity":
        sensitivity_stage(cfg)
        inputs.append(build / SENSITIVITY_JSON)
    return inputs, {"prune": cfg.values["prune"], "train": cfg.values["train"], "dataset": cfg.values["dataset"],
                    "fuse_leaky": cfg.values["compile"]["fuse_leaky"], **recognizer_params(cfg)}


def prune_stage(cfg: Config, force: bool = False, conv_time: ConvTime | None = None) -> StageResult:
    """`invoke prune`: skipped when model.keras and the prune settings are unchanged. `conv_time` is the compiler's
    cycle model, which a latency target needs."""
    inputs, params = stage_inputs(cfg)
    build = cfg.build_dir
    return run_stage(build, "prune", inputs=inputs, params=params, outputs=[build / PRUNED_NAME, build / REPORT_NAME],
                     work=lambda: prune_and_finetune(cfg, inputs[0], conv_time), force=force,
                     tools=["tensorflow-cpu", "keras"])


def format_prune(metrics: dict[str, Any]) -> str:
    """The prune metrics as a short report."""
    target = metrics.get("target")
    reached = (f"; target -{target['reduction_asked']:.0%} {target['metric']}, reached "
               f"-{target['reduction_reached']:.1%}") if target else ""
    key, label = metrics["metric"]["key"], metrics["metric"]["label"]
    return (f"filters {metrics['filters_before']} -> {metrics['filters_after']}, parameters "
            f"{metrics['params_before']:,} -> {metrics['params_after']:,}, MACs -{metrics['reductions']['macs']:.1%}"
            f"{reached}; {label} {metrics[f'{key}_before']:.3f} -> {metrics[f'{key}_pruned']:.3f} pruned -> "
            f"{metrics[f'{key}_finetuned']:.3f} after {metrics['finetune_epochs']} fine-tune epochs")
