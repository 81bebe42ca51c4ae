"""A recognizer config read once: the crop policy, the identity sets and splits, the loss, the teacher."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.data.problems import ProblemLog
from models.data.records import image_size
from models.recognizer.crop import CropPolicy
from models.recognizer.embedder import input_side
from models.recognizer.faces import (
    FaceItem,
    IdentitySplit,
    read_identity_faces,
    read_unlabelled_faces,
    split_identities,
)
from models.recognizer.losses import LOSSES
from pipeline.config import Config
from pipeline.errors import PipelineError

TEACHERS = ("none", "dlib")
TEACHER_DIM = 128


def teacher_cache(cfg: Config) -> Path:
    """The teacher's embedding cache, shared by every config of the build root (its keys hold file, box, model)."""
    return cfg.build_dir.parent / "teacher"


@dataclass(frozen=True)
class RecognizerSettings:
    cfg: Config
    policy: CropPolicy
    roots: tuple[Path, ...]
    embedding_size: int
    head_channels: int
    loss: str
    scale: float
    margin: float
    distill: str
    distill_weight: float
    class_weight: float
    unlabelled: tuple[Path, ...]
    gray_prob: float

    @classmethod
    def from_config(cls, cfg: Config) -> RecognizerSettings:
        rec, data = cfg.recognizer, cfg.dataset
        if data.format != "folders":
            raise PipelineError(f"dataset.format {data.format!r}", path=cfg.path, field="dataset.format",
                                expected="folders (one folder per identity) for a recognizer")
        if rec.loss not in LOSSES:
            raise PipelineError(f"unknown loss {rec.loss!r}", path=cfg.path, field="recognizer.loss",
                                expected=f"one of {', '.join(LOSSES)}")
        if rec.distill not in TEACHERS:
            raise PipelineError(f"unknown teacher {rec.distill!r}", path=cfg.path, field="recognizer.distill",
                                expected=f"one of {', '.join(TEACHERS)}")
        if data.train is None:
            raise PipelineError("no training identities", path=cfg.path, field="dataset.train",
                                expected="a folder of identity folders")
        if rec.unlabelled and rec.distill == "none":
            raise PipelineError("unlabelled faces without a teacher", path=cfg.path, field="recognizer.unlabelled",
                                expected="recognizer.distill set (unlabelled faces only carry a teacher target)")
        if rec.class_weight == 0 and rec.distill == "none":
            raise PipelineError("class_weight 0 without a teacher leaves no loss", path=cfg.path,
                                field="recognizer.class_weight", expected="> 0, or recognizer.distill set")
        roots = (cfg.resolve_path(data.train), *(cfg.resolve_path(p) for p in rec.extra_train))
        policy = CropPolicy(input_side(cfg.values["model"]), int(round(rec.crop_margin * 1000)))
        return cls(cfg, policy, roots, rec.embedding_size, rec.head_channels, rec.loss, rec.scale, rec.margin,
                   rec.distill, rec.distill_weight, rec.class_weight,
                   tuple(cfg.resolve_path(p) for p in rec.unlabelled), rec.gray_prob)

    def identity_split(self, log: ProblemLog) -> IdentitySplit:
        """The training sets' identities dealt into train / held-back / strangers (seeded)."""
        rec = self.cfg.recognizer
        items = read_identity_faces(self.roots, log, rec.min_images)
        return split_identities(items, rec.val_identities, rec.stranger_identities, self.cfg.train.seed,
                                excluded=rec.held_out_identities)

    def unlabelled_faces(self, log: ProblemLog) -> list[FaceItem]:
        """The distillation-only faces of `recognizer.unlabelled` (none when it is empty)."""
        return read_unlabelled_faces(self.unlabelled, self.cfg.recognizer.unlabelled_min_side, log)

    def sample_images(self, split: str, count: int, seed: int) -> list[np.ndarray]:
        """`count` random policy crops (float32 in [0, 1]) of the training identities (split "train") or of the
        held-back ones ("val"): calibration and comparison images for export."""
        from models.recognizer.augment import eval_images
        from models.recognizer.faces import crop_faces

        split_items = self.identity_split(ProblemLog())
        items = split_items.train if split == "train" else split_items.val
        order = np.random.default_rng(seed).permutation(len(items))[:count]
        crops, _ = crop_faces([items[i] for i in order], self.policy, ProblemLog(), f"{split} crops")
        return list(eval_images(crops))

    def teacher_targets(self, items: list[FaceItem], build: Path) -> tuple[np.ndarray, np.ndarray]:
        """(N, 128) teacher embeddings and which items have one; none without distillation."""
        if self.distill == "none":
            return np.zeros((len(items), TEACHER_DIM), np.float32), np.zeros(len(items), bool)
        from models.recognizer.teacher import teacher_embeddings

        boxes = [item.box if item.box is not None else item.face_box(*image_size(item.path), self.policy)
                 for item in items]
        embeddings, kept = teacher_embeddings(list(zip((item.path for item in items), boxes, strict=True)),
                                              teacher_cache(self.cfg), skip_unreadable=True)
        full = np.zeros((len(items), TEACHER_DIM), np.float32)
        full[kept] = embeddings
        return full, kept

    def input_paths(self) -> list[Path]:
        return [*self.roots, *self.unlabelled]

    def metadata(self, classes: list[str]) -> dict[str, Any]:
        """What compile, evaluation and the firmware need to use the embedder (build/<config>/model_meta.json)."""
        return {"task": "recognizer", "family": self.cfg.model.family, "width": self.cfg.model.width,
                "input_size": [self.policy.size, self.policy.size], "embedding_size": self.embedding_size,
                "crop_margin_permille": self.policy.margin_permille, "trained_identities": len(classes),
                "loss": self.loss, "distill": self.distill, "layout": "embedding, L2-normalised on the CPU"}
