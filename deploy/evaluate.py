"""`invoke eval`: the models/ evaluation of a detector or a recognizer, given every runtime it scores (Keras, float
and uint8 TFLite in LiteRT, the kmodel in the KPU simulator of eval.kmodel_engine). The detector's kmodel is scored
twice: fed the images as the other rows are (row `kmodel`) and each source image through the firmware's own
preprocessing (row `kmodel_firmware`: the AP of the bytes the board sees). Both use the one letterbox of
models/letterbox.py, so the two rows agree; a gap would mean the paths drifted apart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy.export import default_model_path
from deploy.predictors import (
    FIRMWARE_LETTERBOX,
    kmodel_embed,
    kmodel_firmware_predictor,
    kmodel_predictor,
    tflite_embed,
    tflite_predictor,
)
from deploy.tflite import LiteRTRunner
from models.evaluate import Runtime, evaluate_runtimes, keras_runtime, output_hwc
from models.recognizer.centre import check_centre_model
from models.recognizer.evaluate import evaluate_recognizer, keras_embedder
from pipeline.config import Config

DETECTOR_RUNTIMES = ("keras", "float", "uint8", "kmodel", "kmodel_firmware")
RECOGNIZER_RUNTIMES = ("keras", "float", "uint8", "kmodel")


def detector_runtimes(cfg: Config, model_path: Path | None = None) -> dict[str, Runtime]:
    """Every runtime `invoke eval` scores a detector on, by row name."""
    build = cfg.build_dir
    engine, input_size = cfg.eval.kmodel_engine, cfg.model.input_size

    def hwc() -> tuple[int, int, int]:
        return output_hwc(cfg, build / "model_meta.json")

    return {"keras": keras_runtime(model_path or default_model_path(cfg)),
            "float": Runtime(build / "model_float.tflite", lambda p: tflite_predictor(LiteRTRunner(p))),
            "uint8": Runtime(build / "model_uint8.tflite", lambda p: tflite_predictor(LiteRTRunner(p))),
            "kmodel": Runtime(build / "model.kmodel", lambda p: kmodel_predictor(p, hwc(), engine)),
            "kmodel_firmware": Runtime(build / "model.kmodel",
                                       lambda p: kmodel_firmware_predictor(p, hwc(), input_size, engine),
                                       FIRMWARE_LETTERBOX)}


def evaluate_stage(cfg: Config, split: str = "val", runtimes: tuple[str, ...] = DETECTOR_RUNTIMES,
                   model_path: Path | None = None) -> dict[str, Any]:
    """The detector's AP per runtime -> build/<config>/eval.json and a PR-curve PNG."""
    available = detector_runtimes(cfg, model_path)
    return evaluate_runtimes(cfg, {name: available[name] for name in runtimes}, split)


def evaluate_recognizer_stage(cfg: Config, runtimes: tuple[str, ...] = RECOGNIZER_RUNTIMES,
                              model_path: Path | None = None, teacher: bool = True) -> dict[str, Any]:
    """LFW and classroom metrics of every available runtime (and the teacher) -> eval.json + lfw_roc.png; a model
    given by path must be the one whose embedding centre `invoke export` computed, when the config centres."""
    build = cfg.build_dir
    if model_path is not None:
        check_centre_model(cfg, model_path)
    engine = cfg.eval.kmodel_engine
    available = {"keras": keras_embedder(model_path or default_model_path(cfg)),
                 "float": (build / "model_float.tflite", lambda p: tflite_embed(LiteRTRunner(p), "float TFLite")),
                 "uint8": (build / "model_uint8.tflite", lambda p: tflite_embed(LiteRTRunner(p), "uint8 TFLite")),
                 "kmodel": (build / "model.kmodel", lambda p: kmodel_embed(p, "kmodel (KPU sim)", engine))}
    return evaluate_recognizer(cfg, {name: available[name] for name in runtimes}, teacher)
