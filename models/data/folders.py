"""Identity sets stored as folders: `<root>/<person>/<image>`."""

from __future__ import annotations

from pathlib import Path

from models.data.problems import ProblemLog
from models.data.records import IdentityRecord, image_size
from models.data.voc import IMAGE_SUFFIXES
from pipeline.errors import PipelineError


def read_identity_folders(root: Path, log: ProblemLog) -> list[IdentityRecord]:
    root = Path(root)
    if not root.is_dir():
        raise PipelineError("identity folder not found", path=root, expected="<root>/<person>/<image> folders")
    records = []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        for image_path in sorted(p for p in person.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            try:
                image_size(image_path)
            except PipelineError as exc:
                log.add("unreadable image", exc)
                continue
            records.append(IdentityRecord(image_path, person.name))
    return records
