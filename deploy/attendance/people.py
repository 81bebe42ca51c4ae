"""Whose photos: the people to enroll (a folder per person, or a VOC set whose object names are the people), a
session's photos with their ground truth where known, and the recognizer's held-out strangers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models.data import load_records
from models.data.folders import read_identity_folders
from models.data.problems import ProblemLog
from pipeline.config import Config
from pipeline.errors import PipelineError


@dataclass(frozen=True)
class Photo:
    """One photo and who is in it (None: unknown; a stranger's photo names nobody enrolled)."""

    path: Path
    person: str | None
    stranger: bool = False


def _voc_photos(cfg: Config, split: str) -> list[Photo]:
    """The photos of a VOC split whose single (largest) box names the person."""
    classes = list(cfg.dataset.classes)
    photos = []
    for record in load_records(cfg, split):
        if len(record.labels) == 0:
            continue
        areas = (record.boxes[:, 2] - record.boxes[:, 0]) * (record.boxes[:, 3] - record.boxes[:, 1])
        photos.append(Photo(record.image_path, classes[int(record.labels[int(areas.argmax())])]))
    return photos


def enrollment_photos(cfg: Config, people: Path | None = None) -> dict[str, list[Path]]:
    """name -> photos: `people` (or attendance.people) as a folder per person, else the config's train split."""
    folder = Path(people) if people else cfg.resolve_path(cfg.attendance.people)
    if folder is not None:
        log = ProblemLog()
        records = read_identity_folders(folder, log)
        by_person: dict[str, list[Path]] = {}
        for record in records:
            by_person.setdefault(record.identity, []).append(record.image_path)
    else:
        by_person = {}
        for photo in _voc_photos(cfg, "train"):
            by_person.setdefault(photo.person, []).append(photo.path)
    if not by_person:
        raise PipelineError("no people to enroll", path=folder or cfg.path, field="attendance.people",
                            expected="a folder per person with photos, or dataset.train with named boxes")
    return by_person


def session_photos(cfg: Config, images: Path | None = None) -> list[Photo]:
    """A session: the photos of `images` (truth unknown), else attendance.session (same), else dataset.val (the
    names of its boxes are the truth)."""
    from deploy.firmware.camera_frames import list_images

    folder = Path(images) if images else cfg.resolve_path(cfg.attendance.session)
    if folder is not None:
        return [Photo(path, None) for path in list_images(folder)]
    return _voc_photos(cfg, "val")


def stranger_photos(recognizer: Config, count: int, *, held_back: bool = False) -> list[Photo]:
    """The first `count` photos of the recognizer's held-out strangers (identities it never trained on), or of its
    held-back identities (never trained on either; used to tune the threshold, so the strangers stay unseen)."""
    if count == 0:
        return []
    from models.recognizer.settings import RecognizerSettings

    split = RecognizerSettings.from_config(recognizer).identity_split(ProblemLog())
    by_person: dict[str | None, list] = {}
    for item in split.val if held_back else split.strangers:
        by_person.setdefault(item.identity, []).append(item)
    # one photo of each person in turn, so a few people with many photos do not make up the whole set
    rounds = []
    for turn in range(max(map(len, by_person.values()), default=0)):
        rounds += [items[turn] for items in by_person.values() if turn < len(items)]
    return [Photo(item.path, None, stranger=True) for item in rounds[:count]]
