"""Backbones for the face detector: each maps an input tensor to its feature maps at half the output stride (the
passthrough's source) and at the output stride (16 or 32)."""

from __future__ import annotations

from collections.abc import Callable

import keras

from models.backbones.blocks import Widths
from models.backbones.darknet import darknet19
from models.backbones.mobilenet import mobilenet_v1
from models.backbones.tiny import tiny_yolov2
from pipeline.errors import PipelineError

Backbone = Callable[[keras.KerasTensor, Widths, str, int], tuple[keras.KerasTensor, keras.KerasTensor]]

# family -> (backbone, whether the head concatenates the passthrough of the map at half the output stride)
FAMILIES: dict[str, tuple[Backbone, bool]] = {
    "darknet19": (darknet19, False),
    "skip_darknet19": (darknet19, True),
    "mobilenet_v1": (mobilenet_v1, False),
    "tiny": (tiny_yolov2, False),
}

# DarkNet53 is not offered: its residual shortcuts are elementwise adds, which the KPU cannot run (spec §1.4).


def backbone_for(family: str) -> tuple[Backbone, bool]:
    """The backbone builder of a model family and whether it uses the passthrough."""
    if family not in FAMILIES:
        raise PipelineError(f"unknown family {family!r}", field="model.family",
                            expected=f"one of {', '.join(FAMILIES)} (DarkNet53 is not offered: its residual adds "
                                     "run on the K210 CPU, not the KPU)")
    return FAMILIES[family]
