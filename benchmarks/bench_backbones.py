"""The backbone comparison of issue #3: every configs/compare/*.yaml (each family at the widest width within the same
1 MiB uint8 budget, one short schedule) trained from scratch on the face-mask set, best val AP@0.5 side by side.
Ratios are against the stride-32 skip DarkNet19 trained in the same run. Takes about 7 minutes per config on 2 cores,
so it runs only when asked for (`invoke bench --only backbones`); skipped with a reason without the face-mask data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.train import train_stage
from pipeline.config import REPO_ROOT, SHARED_DATA, load_config
from pipeline.plotting import new_figure, save_figure

COMPARE_DIR = REPO_ROOT / "configs" / "compare"
BASELINE = "skip_darknet19"
ON_REQUEST_ONLY = True


def _train(config_path: Path) -> dict[str, Any]:
    """Train one comparison config from scratch (into build/bench/stages/<its name>/); its model settings, budget
    and best AP."""
    cfg = load_config(config_path, {"train.quiet": True})
    metrics = train_stage(cfg, force=True, resume=False).metrics
    model = cfg.model
    return {"config": str(config_path.relative_to(REPO_ROOT)), "family": model.family, "width": model.width,
            "output_stride": model.output_stride, "min_channels": model.min_channels,
            "uint8_mib": metrics["budget"]["uint8_mib"], "macs_m": metrics["budget"]["macs_m"],
            "epochs": metrics["epochs_run"], "train_seconds": metrics["train_seconds"],
            "best_val_ap50": round(float(metrics["best_val_ap50"]), 4)}


def _plot(rows: dict[str, dict[str, Any]], png: Path) -> None:
    fig, ax = new_figure(8, 4.5)
    names = sorted(rows, key=lambda name: rows[name]["best_val_ap50"])
    ax.barh(names, [rows[name]["best_val_ap50"] for name in names], color="tab:blue")
    for y, name in enumerate(names):
        row = rows[name]
        ax.text(row["best_val_ap50"] + 0.005, y, f"{row['best_val_ap50']:.3f}  ({row['uint8_mib']:.2f} MiB, "
                f"w {row['width']:g})", va="center", fontsize=8)
    ax.set_xlabel("best face-mask val AP@0.5 after the short schedule")
    ax.set_xlim(0, 1)
    ax.set_title("Backbones at the same 1 MiB uint8 budget")
    save_figure(fig, png)


def run(out_dir: Path) -> dict[str, Any]:
    """Train each comparison config and tabulate best val AP@0.5, size and MACs, with a bar chart PNG."""
    if not (SHARED_DATA / "facemask").is_dir():
        return {"skipped": f"the face-mask data is absent ({SHARED_DATA / 'facemask'})"}
    rows = {path.stem: _train(path) for path in sorted(COMPARE_DIR.glob("*.yaml"))}
    baseline = rows[BASELINE]["best_val_ap50"] if BASELINE in rows else None
    for row in rows.values():
        row["ap50_ratio_to_stride32_skip_darknet19"] = round(row["best_val_ap50"] / baseline, 3) if baseline else None
    _plot(rows, out_dir / "backbones.png")
    return {"configs": rows, "baseline": BASELINE}
