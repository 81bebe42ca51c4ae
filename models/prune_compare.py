"""`invoke prune --compare`: the configured pruning (its target or sparsity, allocation, criterion and total
fine-tuning epochs) run four ways, one-shot or in two rounds, fine-tuned with or without distillation from the
unpruned model, into prune_compare.json + .png; each variant's model is pruned_<variant>.keras beside them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.prune_cost import ConvTime
from models.prune_stage import (
    PRUNED_NAME,
    REPORT_NAME,
    prune_and_finetune,
    stage_inputs,
    tagged,
)
from pipeline.atomic import write_json
from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.plotting import new_figure, save_figure
from pipeline.stage import StageResult, run_stage

COMPARE_JSON, COMPARE_PNG = "prune_compare.json", "prune_compare.png"
DEFAULT_DISTILL = 1.0  # the distilled variants' weight when prune.distill is 0


def variants(distill: float) -> dict[str, dict[str, Any]]:
    """Variant name -> the prune settings it overrides."""
    weight = distill or DEFAULT_DISTILL
    return {"one_shot": {"prune.rounds": 1, "prune.distill": 0.0},
            "one_shot_distilled": {"prune.rounds": 1, "prune.distill": weight},
            "two_rounds": {"prune.rounds": 2, "prune.distill": 0.0},
            "two_rounds_distilled": {"prune.rounds": 2, "prune.distill": weight}}


def plot_comparison(rows: dict[str, dict[str, Any]], png_path: Path) -> None:
    """Val AP@0.5 right after pruning and after fine-tuning per variant, against the unpruned model's."""
    fig, ax = new_figure(7, 4.5)
    names = list(rows)
    x = np.arange(len(names))
    ax.bar(x - 0.2, [rows[n]["val_ap50_pruned"] for n in names], 0.4, label="pruned (last round, before tuning)")
    ax.bar(x + 0.2, [rows[n]["val_ap50_finetuned"] for n in names], 0.4, label="after fine-tuning")
    ax.axhline(next(iter(rows.values()))["val_ap50_before"], color="black", linestyle=":", label="unpruned")
    ax.set_xticks(x, [f"{n}\nMACs -{rows[n]['reductions']['macs']:.0%}" for n in names], fontsize=8)
    ax.set_ylabel("val AP@0.5")
    ax.set_title("pruning variants at the same target and fine-tuning epochs")
    ax.legend(fontsize=8)
    save_figure(fig, png_path)


def compare_stage(cfg: Config, force: bool = False, conv_time: ConvTime | None = None) -> StageResult:
    """Run every variant (skipped when model.keras and the settings are unchanged); detectors only."""
    if cfg.model.task != "detector":
        raise PipelineError("`invoke prune --compare` compares a detector's fine-tuning with and without distillation; "
                            "a recognizer always distils from its unpruned embedder", path=cfg.path,
                            field="model.task", expected="a detector config, or `invoke prune` without --compare")
    settings, build = cfg.values["prune"], cfg.build_dir  # the settings as the config holds them, for the JSON
    inputs, params = stage_inputs(cfg)
    chosen = variants(cfg.prune.distill)
    outputs = [build / COMPARE_JSON, build / COMPARE_PNG]
    outputs += [build / tagged(name, tag) for tag in chosen for name in (PRUNED_NAME, REPORT_NAME)]

    def work() -> dict[str, Any]:
        rows = {name: prune_and_finetune(cfg.with_values(overrides), inputs[0], conv_time, tag=name)
                for name, overrides in chosen.items()}
        write_json(build / COMPARE_JSON, {"settings": settings, "variants": chosen, "results": rows})
        plot_comparison(rows, build / COMPARE_PNG)
        return {name: {"val_ap50_finetuned": r["val_ap50_finetuned"], "macs_reduction": r["reductions"]["macs"]}
                for name, r in rows.items()}
    return run_stage(build, "prune_compare", inputs=inputs, params=params, outputs=outputs, work=work, force=force,
                     tools=["tensorflow-cpu", "keras"])
