"""The deployed runtimes as predictors for models/ evaluation (which never imports deploy/: these are passed in):
a .tflite in LiteRT and the compiled kmodel in the KPU simulator, fed the evaluation images as the pipeline
prepares them or, for the kmodel, each source image through the firmware's own path (letterbox_input, the C app's
twin; both paths are the one letterbox of models/letterbox.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deploy.firmware.camera_frames import letterbox_input
from deploy.k210.format.kmodel import KModel
from deploy.k210.sim.fast import simulator_for
from deploy.tflite import LiteRTRunner
from models.augment import LETTERBOX_FILL, Letterbox
from models.evaluate import Predictor, SourcePredictor
from models.letterbox import letterbox_fit
from models.recognizer.evaluate import Embed
from models.yolo_decode import chw_to_hwc
from pipeline.progress import bar, progress

FIRMWARE_LETTERBOX = "firmware letterbox (letterbox_input, the bytes the board makes)"
KMODEL_CHUNK = 128  # crops per C runtime call: one process each, and a progress step


def tflite_predictor(runner: LiteRTRunner) -> Predictor:
    """A LiteRT runner (batch 1) as a batch predictor; outputs dequantized to float."""
    return lambda images: np.stack([runner.run(image).reshape(runner.outputs[0]["shape"][1:]) for image in images])


def input_codes(images: np.ndarray) -> np.ndarray:
    """Float HWC images in [0, 1] (N, H, W, 3) as the kmodel's uint8 RGB codes, CHW."""
    return np.ascontiguousarray(np.rint(images * 255.0).astype(np.uint8).transpose(0, 3, 1, 2))


def kmodel_predictor(path: Path | KModel, output_hwc: tuple[int, int, int], engine: str = "fast") -> Predictor:
    """The compiled kmodel as a batch predictor of training-letterboxed images, on the C runtime (engine "fast") or
    the NumPy reference simulator ("reference"; the same bytes; the only one for an in-memory KModel); the
    dequantized flat CHW output comes back as (H, W, C)."""
    simulator = simulator_for(path, fast=engine == "fast")
    height, width, channels = output_hwc

    def predict(images: np.ndarray) -> np.ndarray:
        return np.stack([chw_to_hwc(outputs[0], channels, height, width)
                         for outputs in simulator.dequantized(input_codes(images))])

    return predict


def firmware_placement(source_hw: tuple[int, int], input_size: tuple[int, int]) -> Letterbox:
    """Where the firmware's letterbox puts a source of (height, width) in a (width, height) model input."""
    fit = letterbox_fit((source_hw[1], source_hw[0]), input_size)
    return Letterbox(fit.width / source_hw[1], fit.height / source_hw[0], fit.pad_x, fit.pad_y)


def kmodel_firmware_predictor(path: Path, output_hwc: tuple[int, int, int], input_size: tuple[int, int],
                              engine: str = "fast", fill: int = LETTERBOX_FILL) -> SourcePredictor:
    """The compiled kmodel fed exactly the bytes the firmware makes from each source image (letterbox_input)."""
    simulator = simulator_for(path, fast=engine == "fast")
    height, width, channels = output_hwc

    def predict(sources: list[np.ndarray]) -> list[tuple[np.ndarray, Letterbox]]:
        codes = np.stack([letterbox_input(source, input_size, fill) for source in sources])
        return [(chw_to_hwc(outputs[0], channels, height, width), firmware_placement(source.shape[:2], input_size))
                for source, outputs in zip(sources, simulator.dequantized(codes), strict=True)]

    return predict


def tflite_embed(runner: LiteRTRunner, desc: str) -> Embed:
    """A LiteRT runner (batch 1) as an embed function, with a progress bar."""
    return lambda images: np.stack([runner.run(image).reshape(-1) for image in progress(images, desc=desc,
                                                                                         unit="face")])


def kmodel_embed(path: Path, desc: str, engine: str = "fast") -> Embed:
    """The kmodel on the C runtime (engine "fast", a chunk of crops per call) or the NumPy reference simulator
    ("reference", the same bytes): the crop's uint8 RGB codes (CHW) in, the dequantized output out."""
    simulator = simulator_for(path, fast=engine == "fast")
    chunk = KMODEL_CHUNK if engine == "fast" else 1

    def embed(images: np.ndarray) -> np.ndarray:
        codes = input_codes(images)
        out = []
        with bar(desc=desc, total=len(codes), unit="face") as shown:
            for start in range(0, len(codes), chunk):
                out += [outputs[0].reshape(-1) for outputs in simulator.dequantized(codes[start:start + chunk])]
                shown.update(len(codes[start:start + chunk]))
        return np.stack(out)

    return embed
