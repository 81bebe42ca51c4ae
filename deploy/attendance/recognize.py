"""What the attendance firmware computes for a frame, in Python: letterbox -> detector kmodel -> YOLOv2 region layer
and NMS -> the first `max_faces` boxes in frame pixels -> whole-pixel box -> policy crop -> recognizer kmodel (also
on the mirrored crop with the flip policy) -> normalised embedding in 1e-4 units (firmware/attendance/attendance.c
with the generated detector and recognizer apps). The kmodels run in the bit-exact simulator, so the faces and
embeddings are the board's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploy.attendance.matching import dequantize, embedding_units
from deploy.firmware.camera_frames import boxes_to_frame, letterbox_input
from deploy.firmware.model_spec import ModelSpec
from deploy.k210.format.kmodel_io import load_kmodel
from deploy.k210.sim.simulator import simulate
from models.recognizer.crop import CropPolicy, crop_face, mirrored, rounded_box
from models.yolo_decode import chw_to_hwc, decode_yolov2, nms
from pipeline.errors import PipelineError

# One input (C x H x W uint8) -> the model's raw outputs.
Runner = Callable[[np.ndarray], list[np.ndarray]]


def reference_runner(kmodel: Path, rounding: str = "reference") -> Runner:
    """The kmodel in the NumPy KPU simulator."""
    model = load_kmodel(kmodel)
    return lambda chw: simulate(model, chw, rounding=rounding).outputs


def fast_runner(kmodel: Path, rounding: str = "reference") -> Runner:
    """The kmodel on the C runtime (deploy/k210/sim/fast.py), the same bytes as the simulator, about 30x faster."""
    from deploy.k210.sim.fast import FastSimulator

    sim = FastSimulator(kmodel, rounding=rounding)
    return lambda chw: sim.run(chw[None])[0]


RUNNERS = {"fast": fast_runner, "reference": reference_runner}


def chw_input(hwc: np.ndarray) -> np.ndarray:
    """An H x W x C crop as the model's planar input."""
    return np.ascontiguousarray(hwc.transpose(2, 0, 1))


@dataclass(frozen=True)
class Face:
    """One face of a frame as the firmware sees it."""

    box: tuple[float, float, float, float]  # the detector's box in frame pixels (float32 arithmetic)
    score: float
    crop: tuple[int, int, int, int]  # the whole-pixel box the crop was cut around
    units: np.ndarray  # int16 embedding, units of 1e-4


class FaceReader:
    """The firmware's face path for one detector and one recognizer."""

    def __init__(self, detector: ModelSpec, recognizer: ModelSpec, max_faces: int, *,
                 runner: Callable[[Path], Runner] = reference_runner) -> None:
        if detector.detector is None:
            raise PipelineError("not a detector", path=detector.kmodel, field="kind", expected="detector")
        if recognizer.embedder is None:
            raise PipelineError("not a recognizer", path=recognizer.kmodel, field="kind", expected="embedder")
        self.detector, self.recognizer, self.max_faces = detector, recognizer, max_faces
        self.detect_model, self.embed_model = runner(detector.kmodel), runner(recognizer.kmodel)
        spec = recognizer.embedder
        self.policy = CropPolicy(spec.input_size, spec.crop_margin_permille)

    def detections(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(boxes in frame pixels as float32 N x 4, scores N) of the first max_faces detections, best first."""
        det = self.detector.detector
        output = self.detector.outputs[0]
        raw = self.detect_model(letterbox_input(frame, (det.input_w, det.input_h), det.letterbox_fill))[0]
        values = dequantize(raw, output.scale, output.zero_point) if raw.dtype == np.uint8 else raw
        grid = chw_to_hwc(np.asarray(values, np.float32).reshape(-1), *output.shape)
        found = decode_yolov2(grid, np.array(det.anchors, np.float32), len(det.classes), det.score_threshold)
        kept = nms(found[:det.max_candidates], det.nms_iou)[:self.max_faces]
        if not kept:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        size = (frame.shape[1], frame.shape[0])
        boxes = boxes_to_frame(np.array([d.box for d in kept], np.float32), size, (det.input_w, det.input_h))
        return boxes.astype(np.float32), np.array([d.score for d in kept], np.float32)

    def embed(self, frame: np.ndarray, crop: tuple[int, int, int, int]) -> np.ndarray:
        """The embedding (1e-4 units) of the policy crop around a whole-pixel box."""
        hwc = crop_face(frame, crop, self.policy)
        output, spec = self.recognizer.outputs[0], self.recognizer.embedder
        mirror = self.embed_model(chw_input(mirrored(hwc)))[0] if spec.flip_average else None
        return embedding_units(self.embed_model(chw_input(hwc))[0], output.scale, output.zero_point, spec.centre,
                               mirror)

    def faces(self, frame: np.ndarray) -> list[Face]:
        """Every face the firmware would report for an H x W x 3 uint8 frame, in its order."""
        boxes, scores = self.detections(frame)
        faces = []
        for box, score in zip(boxes, scores, strict=True):
            crop = rounded_box(tuple(float(v) for v in box))
            faces.append(Face(tuple(float(v) for v in box), float(score), crop, self.embed(frame, crop)))
        return faces


def largest(faces: list[Face]) -> Face | None:
    """The face with the largest box area in float32 (the first on ties), as face_enroll picks it."""
    best, best_area = None, np.float32(0)
    for face in faces:
        x1, y1, x2, y2 = (np.float32(v) for v in face.box)
        area = (x2 - x1) * (y2 - y1)
        if best is None or area > best_area:
            best, best_area = face, area
    return best
