"""Open the data set a config names, whatever its format: one call from config + split to records."""

from __future__ import annotations

from pathlib import Path

from models.data.classmap import ClassMap
from models.data.folders import read_identity_folders
from models.data.problems import ProblemLog
from models.data.records import DetectionRecord, IdentityRecord
from models.data.synthetic import SyntheticSpec, write_synthetic_voc
from models.data.voc import read_voc
from models.data.wider import read_wider
from models.data.yolo_txt import read_yolo
from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.stage import run_stage

FORMATS = ("voc", "yolo", "wider", "folders", "synthetic")
SPLITS = ("train", "val")


def class_map(cfg: Config) -> ClassMap:
    try:
        return ClassMap(list(cfg.dataset.classes), dict(cfg.dataset.class_map))
    except ValueError as exc:
        raise PipelineError(str(exc), path=cfg.path, field="dataset.class_map") from exc


def synthetic_dir(cfg: Config, split: str) -> Path:
    return cfg.build_dir / "data" / "synthetic" / split


def ensure_synthetic(cfg: Config, split: str, force: bool = False) -> Path:
    """Render the synthetic split once (a manifest stage: skipped when its parameters are unchanged)."""
    syn = cfg.dataset.synthetic
    width, height = syn.size
    spec = SyntheticSpec(count=syn.train_count if split == "train" else syn.val_count, width=width, height=height,
                         seed=syn.seed + (0 if split == "train" else 1))
    out = synthetic_dir(cfg, split)
    run_stage(cfg.build_dir, f"data-synthetic-{split}", inputs=[], params=spec.__dict__, outputs=[out],
              work=lambda: {"images": write_synthetic_voc(out, spec)}, force=force)
    return out


def _split_path(cfg: Config, split: str) -> Path:
    value = cfg.dataset.train if split == "train" else cfg.dataset.val
    if value is None:
        raise PipelineError(f"no path for the {split} split", path=cfg.path, field=f"dataset.{split}",
                            expected="a folder or file path")
    return cfg.resolve_path(value)


def load_records(cfg: Config, split: str, log: ProblemLog | None = None) -> list[DetectionRecord]:
    """Detection records of one split; problems are skipped and counted in `log` (or raised when it is strict)."""
    if split not in SPLITS:
        raise PipelineError(f"unknown split {split!r}", expected=" or ".join(SPLITS))
    log = log or ProblemLog()
    data = cfg.dataset
    fmt = data.format
    classes = class_map(cfg)
    outside = data.paths_outside_root
    if fmt == "synthetic":
        records = read_voc(ensure_synthetic(cfg, split), classes, log)
    elif fmt == "voc":
        records = read_voc(_split_path(cfg, split), classes, log, outside)
    elif fmt == "yolo":
        classes_file = cfg.resolve_path(data.classes_file) or _split_path(cfg, split).parent / "classes.txt"
        records = read_yolo(_split_path(cfg, split), classes_file, classes, log)
    elif fmt == "wider":
        images_root = cfg.resolve_path(data.images_root)
        if images_root is None:
            raise PipelineError("WIDER FACE needs the image folder", path=cfg.path, field="dataset.images_root")
        records = read_wider(_split_path(cfg, split), images_root, classes, log, outside)
    elif fmt == "folders":
        raise PipelineError("an identity folder set has no boxes; it cannot feed the detector", path=cfg.path,
                            field="dataset.format", expected="voc, yolo, wider or synthetic")
    else:
        raise PipelineError(f"unknown format {fmt!r}", path=cfg.path, field="dataset.format",
                            expected=", ".join(FORMATS))
    if not records:
        raise PipelineError(f"no usable images in the {split} split ({log.total} skipped: {dict(log.counts)})",
                            path=cfg.path, field=f"dataset.{split}")
    return records


def load_identities(cfg: Config, split: str, log: ProblemLog | None = None) -> list[IdentityRecord]:
    log = log or ProblemLog()
    records = read_identity_folders(_split_path(cfg, split), log)
    if not records:
        raise PipelineError(f"no usable images in the {split} split", path=cfg.path, field=f"dataset.{split}")
    return records
