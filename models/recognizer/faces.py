"""Face images of identity folders (`<root>/<person>/<image>`, with a CelebA-299 boxes.csv where the root has one),
the identity splits of training, and their crops by the one crop policy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.data.classmap import ClassMap
from models.data.problems import ProblemLog
from models.data.records import read_image
from models.data.voc import IMAGE_SUFFIXES, read_voc
from models.recognizer.crop import CropPolicy, centred_box, crop_face
from models.recognizer.face_boxes import celeba_boxes
from pipeline.errors import PipelineError
from pipeline.progress import progress


@dataclass(frozen=True)
class FaceItem:
    """One face: its image, its identity (None: unlabelled) and its box in the image's pixels (None: the image is a
    face crop made with the policy's margin, so the centred box is used)."""

    path: Path
    identity: str | None
    box: tuple[float, float, float, float] | None = None

    def face_box(self, width: int, height: int, policy: CropPolicy) -> tuple[float, float, float, float]:
        return self.box if self.box is not None else centred_box(width, height, policy)


def read_identity_faces(roots: Sequence[Path], log: ProblemLog, min_images: int = 2) -> list[FaceItem]:
    """Every face of the identity folders under `roots`. An identity with fewer than `min_images` images is skipped
    and counted; the same identity name under two roots is an error (they would be merged silently)."""
    items: list[FaceItem] = []
    seen: dict[str, Path] = {}
    for root in (Path(r) for r in roots):
        if not root.is_dir():
            raise PipelineError("identity folder not found", path=root, expected="<root>/<person>/<image> folders")
        boxes = celeba_boxes(root) if (root / "boxes.csv").is_file() else {}
        for person in sorted(p for p in root.iterdir() if p.is_dir()):
            if person.name in seen:
                raise PipelineError(f"identity {person.name!r} is also in {seen[person.name]}", path=person,
                                    expected="identity folder names that are unique across the training sets")
            seen[person.name] = root
            images = sorted(p for p in person.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if len(images) < min_images:
                log.report("identity with too few images", f"{len(images)} image(s)", person,
                           expected=f"at least {min_images} images per identity")
                continue
            items += [FaceItem(path, person.name, boxes.get(f"{person.name}/{path.name}")) for path in images]
    return items


class AnyClass(ClassMap):
    """A class map that takes every object name as a face (unlabelled faces keep no class)."""

    def __init__(self) -> None:
        super().__init__(["face"])

    def index(self, name: str) -> int | None:
        return 0


def read_unlabelled_faces(split_dirs: Sequence[Path], min_side: int, log: ProblemLog) -> list[FaceItem]:
    """The annotated faces of VOC split folders whose longer box side is at least `min_side` pixels, without an
    identity (distillation-only crops); smaller faces are counted as skipped."""
    items: list[FaceItem] = []
    for split_dir in split_dirs:
        for record in read_voc(Path(split_dir), AnyClass(), log):
            for box in record.boxes:
                x1, y1, x2, y2 = (float(v) for v in box)
                if max(x2 - x1, y2 - y1) < min_side:
                    log.report("face too small", f"{max(x2 - x1, y2 - y1):g} px", record.annotation_path,
                               expected=f"unlabelled faces of at least {min_side} px (recognizer.unlabelled_min_side)")
                    continue
                items.append(FaceItem(record.image_path, None, (x1, y1, x2, y2)))
    return items


@dataclass(frozen=True)
class IdentitySplit:
    """Disjoint identities: trained on, held back to choose the best epoch, and held out as strangers."""

    train: list[FaceItem]
    val: list[FaceItem]
    strangers: list[FaceItem]

    @property
    def classes(self) -> list[str]:
        return sorted({item.identity for item in self.train if item.identity is not None})


def split_identities(items: Sequence[FaceItem], val_count: int, stranger_count: int, seed: int,
                     excluded: Sequence[str] = ()) -> IdentitySplit:
    """Shuffle the identities (seeded) and deal `stranger_count`, then `val_count`, the rest to training; identities
    in `excluded` (for example the people a classroom enrolls) go nowhere."""
    names = sorted({item.identity for item in items if item.identity is not None} - set(excluded))
    if len(names) <= val_count + stranger_count:
        raise PipelineError(f"{len(names)} identities for {val_count} validation and {stranger_count} stranger ones",
                            field="recognizer.val_identities", expected="more identities than are held back")
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    strangers, val = set(order[:stranger_count]), set(order[stranger_count:stranger_count + val_count])
    pick = lambda chosen: [item for item in items if item.identity in chosen]  # noqa: E731
    return IdentitySplit(train=pick(set(order) - strangers - val), val=pick(val), strangers=pick(strangers))


def crop_faces(items: Sequence[FaceItem], policy: CropPolicy, log: ProblemLog, desc: str = "crop"
               ) -> tuple[np.ndarray, list[FaceItem]]:
    """(N, size, size, 3) uint8 crops of the faces that decode; unreadable images are skipped and counted."""
    crops, kept = [], []
    for item in progress(items, desc=desc, unit="face"):
        try:
            image = read_image(item.path)
        except PipelineError as exc:
            log.add("unreadable image", exc)
            continue
        crops.append(crop_face(image, item.face_box(image.shape[1], image.shape[0], policy), policy))
        kept.append(item)
    empty = np.zeros((0, policy.size, policy.size, 3), np.uint8)
    return (np.stack(crops) if crops else empty), kept
