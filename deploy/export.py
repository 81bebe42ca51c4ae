"""The export stage: a trained Keras model -> float32 and uint8 TFLite, with size and agreement report; for a
recognizer with recognizer.centre_images > 0 also its embedding centre (models/recognizer/centre.py)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deploy.k210.compiler.wide_weights import QUANTIZED_FLOAT_NAME
from deploy.quantize.calibrate import quantize_keras
from deploy.quantize.range_report import group_histograms, plot_ranges, range_figures
from deploy.tflite import LiteRTRunner, export_float, output_step
from models.data import load_records
from models.evaluate import model_anchors
from models.pipeline import prepare_image
from models.prune_stage import prunes
from models.prune_task import fine_tune_detector
from models.yolo_head import load_detector
from pipeline.atomic import write_bytes, write_json
from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.manifest import Manifest, tree_sha256
from pipeline.stage import StageResult, run_stage

FLOAT_NAME, UINT8_NAME, REPORT_NAME, META_NAME = ("model_float.tflite", "model_uint8.tflite",
                                                  "export_report.json", "model_meta.json")
RANGES_NAME = "quant_ranges.json"  # the activation range, scale and zero point of every int8 tensor
RANGES_PNG = "quant_ranges.png"  # per range group: the float values' histogram and the range's ends
HISTOGRAM_IMAGES = 64  # calibration images whose float activations quant_ranges.json/.png describe


def default_model_path(cfg: Config) -> Path:
    """The pruned model when the config prunes (a sparsity or a global target), else the trained model."""
    return cfg.build_dir / ("pruned.keras" if prunes(cfg) else "model.keras")


def finished_model_path(cfg: Config) -> Path:
    """default_model_path, refused when no finished stage recorded it as it is now: an interrupted `invoke train`
    leaves its best epoch so far in model.keras, which must not be exported as if training had finished."""
    path = default_model_path(cfg)
    stage = "prune" if path.name == "pruned.keras" else "train"
    entry = Manifest(cfg.build_dir).stage(stage) or {}
    recorded = entry.get("outputs", {}).get(path.name)
    if path.is_file() and recorded != tree_sha256(path):
        raise PipelineError(f"not recorded by a finished `invoke {stage}` (it was interrupted, or the file was "
                            "changed since)", path=path,
                            expected=f"run `invoke {stage}` again to finish it (it resumes), or pass --model FILE "
                                     "to export that file anyway")
    return path


def sample_images(cfg: Config, split: str, count: int, seed: int) -> list[np.ndarray]:
    """`count` seeded random images of a split as model inputs (float32 HxWx3 in [0, 1]): calibration and
    comparison images."""
    if cfg.model.task == "recognizer":  # face crops by the recognizer's crop policy
        from models.recognizer.settings import RecognizerSettings

        return RecognizerSettings.from_config(cfg).sample_images(split, count, seed)
    records = load_records(cfg, split)
    order = np.random.default_rng(seed).permutation(len(records))[:count]
    return [prepare_image(records[i].load()[0], cfg.model.input_size) for i in order]


def calibration_count(cfg: Config, calib_images: int | None) -> int:
    """The calibration image count (the flag, else quantize.calib_images), refused before anything is written when
    the training set holds fewer images."""
    count = calib_images if calib_images is not None else cfg.quantize.calib_images
    if cfg.model.task == "recognizer":
        from models.data.problems import ProblemLog
        from models.recognizer.settings import RecognizerSettings

        available = len(RecognizerSettings.from_config(cfg).identity_split(ProblemLog()).train)
    else:
        available = len(load_records(cfg, "train"))
    if available < count:
        raise PipelineError(f"the calibration set has {available} images, fewer than the {count} asked",
                            path=cfg.resolve_path(cfg.dataset.train), field="quantize.calib_images",
                            expected=f"at most {available} (the training images there)")
    return count


def agreement(model, float_runner: LiteRTRunner, uint8_runner: LiteRTRunner, images: list[np.ndarray]
              ) -> dict[str, float]:
    """Max / mean absolute differences between Keras, float TFLite and uint8 TFLite outputs on `images`."""
    diffs: dict[str, list[np.ndarray]] = {"keras_vs_float": [], "keras_vs_uint8": [], "float_vs_uint8": []}
    for image in images:
        keras_out = np.asarray(model(image[None], training=False)).reshape(-1)
        float_out = float_runner.run(image).reshape(-1)
        uint8_out = uint8_runner.run(image).reshape(-1)
        diffs["keras_vs_float"].append(np.abs(keras_out - float_out))
        diffs["keras_vs_uint8"].append(np.abs(keras_out - uint8_out))
        diffs["float_vs_uint8"].append(np.abs(float_out - uint8_out))
    step = output_step(uint8_runner)
    out: dict[str, float] = {"uint8_output_step": step}
    for name, values in diffs.items():
        flat = np.concatenate(values)
        out[f"{name}_max"] = float(flat.max())
        out[f"{name}_mean"] = float(flat.mean())
    out["float_vs_uint8_mean_steps"] = out["float_vs_uint8_mean"] / step if step else 0.0
    return out


def export_float_model(cfg: Config, model_path: Path) -> dict[str, Any]:
    """Float TFLite of the model, with the detector metadata copied beside it."""
    model = load_detector(model_path)
    out = cfg.build_dir
    float_bytes = export_float(model, out / FLOAT_NAME)
    meta = model_path.parent / META_NAME
    if meta.is_file() and meta.resolve() != (out / META_NAME).resolve():
        shutil.copyfile(meta, out / META_NAME)
    return {"model": str(model_path), "keras_params": int(model.count_params()), "float_tflite_bytes": float_bytes}


def check_qat(cfg: Config, model_path: Path | None = None) -> None:
    """quantize.qat_epochs > 0 needs a model whose every layer QAT can fake-quantise, and quantize.qat_loss rcm a
    recognizer trained with a margin loss; refused before anything is written."""
    settings = cfg.quantize
    if not settings.qat_epochs:
        return
    recognizer = cfg.model.task == "recognizer"
    if settings.qat_loss == "rcm" and not recognizer:
        raise PipelineError("the rotation-consistent margin is a recognizer loss; a detector fine-tunes on its own",
                            path=cfg.path, field="quantize.qat_loss", expected="distill (ignored by a detector)")
    if settings.qat_loss == "rcm" and cfg.recognizer.loss not in ("cosface", "arcface"):
        raise PipelineError(f"the rotation-consistent margin needs a margin loss, not "
                            f"{cfg.recognizer.loss!r}", path=cfg.path, field="quantize.qat_loss",
                            expected="distill, or recognizer.loss cosface or arcface")
    if model_path is not None and model_path.is_file():
        from deploy.quantize.qat import check_supported

        check_supported(load_detector(model_path))


def qat_fine_tune(cfg: Config, model_path: Path, centre: np.ndarray | None = None) -> Callable[[Any], None] | None:
    """The fine-tuning of quantize.qat_epochs epochs at quantize.qat_learning_rate; None when QAT is off. A detector
    trains on its own loss, data and augmentation (models/prune_task.fine_tune_detector); a recognizer toward the
    float model at model_path by quantize.qat_loss (distill: prune_support.distil_finetune, on the embeddings centred
    by `centre` as every runtime compares them, given when the config has one; rcm: rcm.rcm_finetune)."""
    epochs, rate = cfg.quantize.qat_epochs, cfg.quantize.qat_learning_rate
    if not epochs:
        return None
    if cfg.model.task == "recognizer":
        teacher = load_detector(model_path)  # the float embedder, which QAT leaves as it is
        if cfg.quantize.qat_loss == "rcm":
            from models.recognizer.rcm import rcm_finetune

            weight = cfg.quantize.qat_distill_weight
            return lambda model: rcm_finetune(model, cfg, epochs, rate, teacher, weight)
        from models.recognizer.prune_support import distil_finetune

        return lambda model: distil_finetune(model, cfg, epochs, rate, teacher, centre=centre)
    anchors, _ = model_anchors(model_path.parent / META_NAME)
    return lambda model: fine_tune_detector(model, cfg, epochs, rate, anchors=anchors)


def qat_centre(cfg: Config) -> list[Path]:
    """The centre file a recognizer's QAT distils toward (an input of the quantize stage); none otherwise."""
    from models.recognizer.centre import CENTRE_NAME, centre_images

    distils = cfg.quantize.qat_epochs and cfg.model.task == "recognizer" and cfg.quantize.qat_loss == "distill"
    return [cfg.build_dir / CENTRE_NAME] if distils and centre_images(cfg) else []


def qat_centre_values(cfg: Config) -> np.ndarray | None:
    """The centre a recognizer's distillation QAT compares embeddings after (the centre stage ran first; with flip
    averaging, each crop's own embedding is centred by the flip-averaged centre)."""
    from models.recognizer.centre import embedding_centre

    return embedding_centre(cfg) if qat_centre(cfg) else None


def qat_params(cfg: Config) -> dict[str, Any]:
    """The QAT settings a quantize stage's manifest records: none while QAT is off (so earlier builds stay current),
    the recognizer's loss settings only for a recognizer."""
    settings = cfg.values["quantize"]  # as the config holds them: the manifest hashes these
    if not cfg.quantize.qat_epochs:
        return {}
    loss = {"qat_loss": settings["qat_loss"]} if cfg.model.task == "recognizer" else {}
    if loss and settings["qat_loss"] == "rcm":
        loss["qat_distill_weight"] = settings["qat_distill_weight"]
    if qat_centre(cfg):
        loss["qat_centred"] = True  # distils the centred embeddings
    kurtosis = {"qat_kurtosis": settings["qat_kurtosis"]} if settings["qat_kurtosis"] else {}
    return {"qat_epochs": settings["qat_epochs"], "qat_learning_rate": settings["qat_learning_rate"], **loss,
            **kurtosis}


def quantize_model(cfg: Config, model_path: Path, calib_images: int, held_images: int) -> dict[str, Any]:
    """Full-integer TFLite calibrated on training images, compared with Keras and float TFLite on held images."""
    model = load_detector(model_path)
    out = cfg.build_dir
    seed = cfg.train.seed
    method, percentile, cle = cfg.quantize.method, cfg.quantize.percentile, cfg.quantize.cle
    calibration = sample_images(cfg, "train", calib_images, seed)
    started = time.perf_counter()
    calibrated = quantize_keras(model, (out / FLOAT_NAME).read_bytes(), calibration, method, percentile, cle,
                                qat_fine_tune(cfg, model_path, qat_centre_values(cfg)), cfg.quantize.qat_kurtosis)
    seconds = time.perf_counter() - started
    held = sample_images(cfg, "val", held_images, seed + 1)
    shown = calibration[:HISTOGRAM_IMAGES]
    groups = group_histograms(calibrated.data, calibrated.float_data, shown)
    figures = range_figures(groups, calibrated.ranges)
    write_json(out / RANGES_NAME, {"method": method, "percentile": percentile, "cle": cle, **qat_params(cfg),
                                   "histogram_images": len(shown),
                                   "tensors": {name: {**entry, **figures.get(name, {})}
                                               for name, entry in calibrated.ranges.items()}})
    plot_ranges(groups, calibrated.ranges, out / RANGES_PNG,
                f"{cfg.name}: float activations on {len(shown)} calibration images (log counts) and the uint8 "
                f"ranges (red): {method}{' + CLE' if cle else ''}{qat_note(cfg.quantize.qat_epochs)}")
    write_bytes(out / QUANTIZED_FLOAT_NAME, calibrated.float_data)
    write_bytes(out / UINT8_NAME, calibrated.data)
    uint8_bytes = len(calibrated.data)
    report = {
        "model": str(model_path),
        "keras_params": int(model.count_params()),
        "float_tflite_bytes": (out / FLOAT_NAME).stat().st_size,
        "uint8_tflite_bytes": uint8_bytes,
        "calibration_images": calib_images,
        "quantize_method": method,
        "quantize_percentile": percentile,
        "quantize_cle": cle,
        "quantize_qat_epochs": cfg.quantize.qat_epochs,
        "calibration_s": round(seconds, 2),
        "held_images": len(held),
        **agreement(model, LiteRTRunner(out / FLOAT_NAME), LiteRTRunner(out / UINT8_NAME), held),
    }
    write_json(out / REPORT_NAME, report)
    return report


TOOLS = ["tensorflow-cpu", "keras", "ai-edge-litert"]


def float_stage(cfg: Config, model_path: Path, force: bool = False) -> StageResult:
    out = cfg.build_dir
    inputs = [model_path] if model_path.exists() else []
    return run_stage(out, "export", inputs=inputs, params={"input_size": cfg.values["model"]["input_size"]},
                     outputs=[out / FLOAT_NAME], work=lambda: export_float_model(cfg, model_path), force=force,
                     tools=TOOLS)


def quantize_stage(cfg: Config, *, model_path: Path | None = None, calib_images: int | None = None,
                   held_images: int | None = None, force: bool = False) -> StageResult:
    """uint8 TFLite through the manifest: skipped when the models, data and settings are unchanged."""
    model_path = Path(model_path) if model_path else default_model_path(cfg)
    out = cfg.build_dir
    check_qat(cfg)  # the layers are checked by quantize_keras, before anything is written
    if not (out / FLOAT_NAME).is_file():
        raise PipelineError("float TFLite model not found", path=out / FLOAT_NAME, expected="run `invoke export`")
    calib = calibration_count(cfg, calib_images)
    held = held_images if held_images is not None else cfg.export.held_images
    params = {"calib_images": calib, "held_images": held, "dataset": cfg.values["dataset"],
              "input_size": cfg.values["model"]["input_size"], "method": cfg.values["quantize"]["method"],
              "percentile": cfg.values["quantize"]["percentile"], "cle": cfg.values["quantize"]["cle"],
              **qat_params(cfg)}
    inputs = [p for p in (model_path, out / FLOAT_NAME, *qat_centre(cfg)) if p.exists()]
    return run_stage(out, "quantize", inputs=inputs, params=params,
                     outputs=[out / UINT8_NAME, out / REPORT_NAME, out / RANGES_NAME, out / RANGES_PNG,
                              out / QUANTIZED_FLOAT_NAME],
                     work=lambda: quantize_model(cfg, model_path, calib, held), force=force, tools=TOOLS)


def centre_params(cfg: Config) -> dict[str, Any]:
    """What the centre depends on besides the model: the crop count and seed, the data and identity split, and the
    flip policy (recognizer.flip_average)."""
    rec = {key: value for key, value in cfg.values["recognizer"].items()
           if key not in ("lfw", "classroom", "eval_pairs_per_fold", "eval_strangers")}
    return {"seed": cfg.values["train"]["seed"], "dataset": cfg.values["dataset"], "recognizer": rec}


def centre_stage(cfg: Config, model_path: Path, force: bool = False) -> StageResult | None:
    """A recognizer's embedding centre over recognizer.centre_images training-identity crops (the quantization
    calibration draws its crops the same way) -> embedding_centre.json; None when the config has no centre."""
    from models.recognizer.centre import CENTRE_NAME, centre_images, compute_centre, flip_average, write_centre
    from models.recognizer.embedder import load_embedder
    from models.recognizer.evaluate import keras_embed

    count = centre_images(cfg)
    if not count:
        return None
    if not model_path.is_file():
        raise PipelineError("model not found", path=model_path, expected="the trained recognizer (invoke train)")
    out = cfg.build_dir / CENTRE_NAME

    def work() -> dict[str, Any]:
        images = sample_images(cfg, "train", count, cfg.train.seed)
        flip = flip_average(cfg)
        centre = compute_centre(keras_embed(load_embedder(model_path)), images, flip)
        write_centre(out, centre, len(images), model_path, flip)
        print(f"embedding centre of {len(images)} training-identity crops{' and their mirror images' * flip}: "
              f"length {np.linalg.norm(centre):.4f}")
        return {"centre_images": len(images), "flip_average": flip, "centre_length": float(np.linalg.norm(centre))}

    return run_stage(cfg.build_dir, "centre", inputs=[model_path], params=centre_params(cfg), outputs=[out],
                     work=work, force=force, tools=TOOLS)


def export_stage(cfg: Config, *, model_path: Path | None = None, calib_images: int | None = None,
                 held_images: int | None = None, force: bool = False) -> StageResult:
    """Float export, a recognizer's embedding centre when its config asks for one, then quantization: both TFLite
    models and the agreement report."""
    model_path = Path(model_path) if model_path else finished_model_path(cfg)
    check_qat(cfg, model_path)  # before the float export, so nothing is written
    if model_path.is_file():  # a missing model is named by the float stage
        calibration_count(cfg, calib_images)  # refused before the float export, so nothing is written
    float_stage(cfg, model_path, force=force)
    centre_stage(cfg, model_path, force=force)  # before quantization: a recognizer's QAT distils centred embeddings
    return quantize_stage(cfg, model_path=model_path, calib_images=calib_images, held_images=held_images,
                          force=force)


def format_export(metrics: dict[str, Any]) -> str:
    return (f"float TFLite {metrics['float_tflite_bytes'] / 1024:.1f} KiB, uint8 TFLite "
            f"{metrics['uint8_tflite_bytes'] / 1024:.1f} KiB ({metrics['keras_params']} params); activation ranges "
            f"by {metrics.get('quantize_method', 'tflite')} on {metrics['calibration_images']} images"
            f"{qat_note(metrics.get('quantize_qat_epochs', 0))}\n"
            f"on {metrics['held_images']} held images: keras vs float max {metrics['keras_vs_float_max']:.2e} "
            f"mean {metrics['keras_vs_float_mean']:.2e}; keras vs uint8 max {metrics['keras_vs_uint8_max']:.4f} "
            f"mean {metrics['keras_vs_uint8_mean']:.4f}; float vs uint8 mean "
            f"{metrics['float_vs_uint8_mean_steps']:.2f} output steps (step {metrics['uint8_output_step']:.4f})")


def qat_note(epochs: int) -> str:
    """How the export report line names quantization-aware training (nothing when it is off)."""
    return f", then learned in {epochs} epoch{'s' * (epochs != 1)} of QAT" if epochs else ""
