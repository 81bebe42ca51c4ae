"""Dataset readers (Pascal VOC, YOLO txt, WIDER FACE, identity folders), class maps and a synthetic face set."""

from models.data.problems import ProblemLog
from models.data.records import DetectionRecord, IdentityRecord, read_image
from models.data.sets import load_identities, load_records

__all__ = ["DetectionRecord", "IdentityRecord", "ProblemLog", "load_identities", "load_records", "read_image"]
