"""A recognizer config read once: the crop policy, the identity sets and splits, the loss, the teacher."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.data.problems import ProblemLog
from models.recognizer.crop import CropPolicy
from models.recognizer.embedder import input_side
from models.recognizer.faces import FaceItem, IdentitySplit, read_identity_faces, split_identities
from models.recognizer.losses import LOSSES
from pipeline.config import Config
from pipeline.errors import PipelineError

TEACHERS = ("none", "dlib")
TEACHER_DIM = 128


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
    gray_prob: float

    @classmethod
    def from_config(cls, cfg: Config) -> RecognizerSettings:
        rec, data = cfg.values["recognizer"], cfg.values["dataset"]
        if data["format"] != "folders":
            raise PipelineError(f"dataset.format {data['format']!r}", path=cfg.path, field="dataset.format",
                                expected="folders (one folder per identity) for a recognizer")
        if rec["loss"] not in LOSSES:
            raise PipelineError(f"unknown loss {rec['loss']!r}", path=cfg.path, field="recognizer.loss",
                                expected=f"one of {', '.join(LOSSES)}")
        if rec["distill"] not in TEACHERS:
            raise PipelineError(f"unknown teacher {rec['distill']!r}", path=cfg.path, field="recognizer.distill",
                                expected=f"one of {', '.join(TEACHERS)}")
        if data["train"] is None:
            raise PipelineError("no training identities", path=cfg.path, field="dataset.train",
                                expected="a folder of identity folders")
        roots = (cfg.resolve_path(data["train"]), *(cfg.resolve_path(p) for p in rec["extra_train"]))
        policy = CropPolicy(input_side(cfg.values["model"]), int(round(float(rec["crop_margin"]) * 1000)))
        return cls(cfg, policy, roots, int(rec["embedding_size"]), int(rec["head_channels"]), rec["loss"],
                   float(rec["scale"]), float(rec["margin"]), rec["distill"], float(rec["distill_weight"]),
                   float(rec["gray_prob"]))

    @property
    def values(self) -> dict[str, Any]:
        return self.cfg.values["recognizer"]

    def identity_split(self, log: ProblemLog) -> IdentitySplit:
        """The training sets' identities dealt into train / held-back / strangers (seeded)."""
        items = read_identity_faces(self.roots, log, int(self.values["min_images"]))
        return split_identities(items, int(self.values["val_identities"]), int(self.values["stranger_identities"]),
                                int(self.cfg.values["train"]["seed"]),
                                excluded=[str(name) for name in self.values["held_out_identities"]])

    def teacher_targets(self, items: list[FaceItem], build: Path) -> tuple[np.ndarray, np.ndarray]:
        """(N, 128) teacher embeddings and which items have one; none without distillation."""
        if self.distill == "none":
            return np.zeros((len(items), TEACHER_DIM), np.float32), np.zeros(len(items), bool)
        from models.recognizer.teacher import teacher_embeddings_for

        return teacher_embeddings_for(items, self.policy, build / "teacher")

    def input_paths(self) -> list[Path]:
        return list(self.roots)

    def metadata(self, classes: list[str]) -> dict[str, Any]:
        """What compile, evaluation and the firmware need to use the embedder (build/<config>/model_meta.json)."""
        model = self.cfg.values["model"]
        return {"task": "recognizer", "family": model["family"], "width": float(model["width"]),
                "input_size": [self.policy.size, self.policy.size], "embedding_size": self.embedding_size,
                "crop_margin_permille": self.policy.margin_permille, "trained_identities": len(classes),
                "loss": self.loss, "distill": self.distill, "layout": "embedding, L2-normalised on the CPU"}
