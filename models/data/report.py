"""The `invoke data --stats` stage: read every split, count what was usable and skipped, write JSON + PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.data.problems import ProblemLog
from models.data.sets import SPLITS, class_map, ensure_synthetic, load_records
from models.data.stats import dataset_stats, plot_box_histograms
from pipeline.atomic import write_json
from pipeline.config import Config


def _regenerate_if_forced(cfg: Config, force: bool) -> None:
    if force and cfg.dataset.format == "synthetic":
        for split in SPLITS:
            ensure_synthetic(cfg, split, force=True)


def check_data_report(cfg: Config, *, strict: bool = False, force: bool = False) -> str:
    """Read every split (generating a synthetic set if needed); one line per split of what was usable."""
    _regenerate_if_forced(cfg, force)
    lines = []
    for split in SPLITS:
        log = ProblemLog(strict=strict)
        records = load_records(cfg, split, log)
        log.warn()
        boxes = sum(len(r.boxes) for r in records)
        lines.append(f"{split}: {len(records)} images, {boxes} boxes, {log.total} skipped")
    return "\n".join(lines)


def data_stats_report(cfg: Config, *, strict: bool = False, force: bool = False) -> dict[str, Any]:
    """Stats per split in build/<config>/data/stats.json and stats_<split>.png; returns them."""
    _regenerate_if_forced(cfg, force)
    classes = class_map(cfg).classes
    out_dir = cfg.build_dir / "data"
    report: dict[str, Any] = {"config": str(cfg.path), "format": cfg.dataset.format,
                              "classes": classes, "splits": {}}
    for split in SPLITS:
        log = ProblemLog(strict=strict)
        records = load_records(cfg, split, log)
        log.warn()
        png = out_dir / f"stats_{split}.png"
        plot_box_histograms(records, f"{cfg.name} {split}: {len(records)} images", png)
        report["splits"][split] = {**dataset_stats(records, classes, log), "plot": str(png)}
    write_json(out_dir / "stats.json", report)
    return report


def format_stats(report: dict[str, Any]) -> str:
    lines = [f"dataset ({report['format']}), classes: {', '.join(report['classes'])}"]
    for split, s in report["splits"].items():
        per_class = ", ".join(f"{k}={v}" for k, v in s["boxes_per_class"].items())
        side = s["box_side_px"]
        lines.append(f"  {split:5s} images={s['images']} boxes={s['boxes']} ({per_class})"
                     f" box side px min/median/max={side.get('min')}/{side.get('median')}/{side.get('max')}")
        if s["skipped"]:
            lines.append(f"        skipped: {s['skipped']}")
        if s["repaired"]:
            lines.append(f"        repaired: {s['repaired']}")
        lines.append(f"        plot: {Path(s['plot'])}")
    return "\n".join(lines)
