"""The compile-report equivalent of nncase's 20-class VOC YOLOv2 example kmodel (../shared/data/kmodels), which
was compiled without our compiler and so has no report: facts from the data README (example's main.c)."""

from __future__ import annotations

from typing import Any

VOC20_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
VOC20_ANCHORS = ((1.08, 1.19), (3.42, 4.41), (6.63, 11.38), (9.42, 5.11), (16.62, 10.52))


def voc20_report() -> dict[str, Any]:
    """A compile-report dict with the detector section of the voc20 example (score 0.5, NMS IoU 0.2)."""
    return {
        "detector": {
            "classes": list(VOC20_CLASSES),
            "anchors": [list(a) for a in VOC20_ANCHORS],
            "input_size": [320, 240],
            "grid": [10, 7],
            "num_anchors": len(VOC20_ANCHORS),
            "score_threshold": 0.5,
            "nms_iou": 0.2,
        },
        "outputs": [{"shape": [125, 7, 10], "dtype": "float32"}],
    }
