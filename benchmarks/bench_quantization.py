"""Quantization methods on the face-mask detector (issue #14): for each `quantize.method` the Keras float AP@0.5 on
val, the uint8 kmodel's AP@0.5 in the KPU simulator (the C runtime, eval.kmodel_engine: fast), the drop, the
calibration time and the kmodel bytes; then a calibration-set-size sweep (50 .. all 597 training images, and 1194:
the 597 plus their mirror images, since the set has no more) for the converter's min/max (the baseline, measured in
the same run) and the best method. The model is build/facemask/model.keras (`invoke train --config
configs/facemask.yaml`, or a copy of a finished run); everything this writes goes to build/bench/. The table ends
with quantization-aware training (QAT_EPOCHS epochs from the converter's ranges after equalisation; its time is the
calibration plus the fine-tuning), which the sweep leaves out. The product recognizer's table (LFW dev accuracy per
method) ends the same way with its QAT rows: the product's (3 epochs of distillation on the centred embeddings) and
one epoch of RCM. Runs only when asked (`invoke
bench --only quantization`): about 25-35 minutes on 2 shared cores for the detector; the recognizer's QAT rows took
71 s (distill) and 143 s (rcm) at load average 1.5-3, about 5 and 9 minutes at 8-10."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.runner import trained_build
from pipeline.config import REPO_ROOT, SHARED_DATA, load_config
from pipeline.errors import PipelineError

CONFIG = REPO_ROOT / "configs" / "facemask.yaml"
RECOGNIZER_CONFIG = REPO_ROOT / "configs" / "recognizer.yaml"
BASELINE = "tflite"
# (label, method, percentile); each is measured as it is, and the baseline and the best also with quantize.cle
VARIANTS = [("tflite", "tflite", 99.99), ("minmax", "minmax", 99.99), ("percentile 99.9", "percentile", 99.9),
            ("percentile 99.99", "percentile", 99.99), ("mse", "mse", 99.99), ("kl", "kl", 99.99)]
SWEEP = (50, 100, 200, 400, 597)
QAT_EPOCHS = 4  # quantize.qat_epochs of the table's QAT row
# (quantize.qat_loss, quantize.qat_epochs) of the recognizer table's QAT rows: the product's, and RCM's one epoch
RECOGNIZER_QAT = (("distill", 3), ("rcm", 1))
ON_REQUEST_ONLY = True


class Bench:
    """The model, its float TFLite, the val set and the calibration pool, loaded once."""

    def __init__(self, work: Path) -> None:
        import tensorflow as tf

        from models.data import load_records
        from models.evaluate import load_eval_set, model_anchors
        from models.yolo_head import grid_size, load_detector

        self.cfg = load_config(CONFIG)
        build = trained_build(self.cfg)
        self.model = load_detector(build / "model.keras")
        self.anchors, self.classes = model_anchors(build / "model_meta.json")
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.float_bytes = tf.lite.TFLiteConverter.from_keras_model(self.model).convert()
        self.input_size = self.cfg.model.input_size
        grid_w, grid_h = grid_size(self.cfg.values["model"])
        self.output_hwc = (grid_h, grid_w, len(self.anchors) * (5 + len(self.classes)))
        self.val = load_eval_set(load_records(self.cfg, "val"), self.input_size)
        self.train_count = len(load_records(self.cfg, "train"))

    def ap50(self, predict, desc: str) -> float:
        from models.evaluate import collect_results
        from models.metrics import evaluate_results

        results = collect_results(predict, self.val, self.anchors, len(self.classes), self.input_size,
                                  self.cfg.deploy.nms_iou, desc=desc)
        return float(evaluate_results(results, self.classes, self.cfg.deploy.score_threshold)["ap50"])

    def calibration(self, count: int) -> list[np.ndarray]:
        """`count` training images as `invoke quantize` picks them; beyond the set, its mirror images."""
        from deploy.export import sample_images

        images = sample_images(self.cfg, "train", min(count, self.train_count), self.cfg.train.seed)
        return images + [image[:, ::-1].copy() for image in images[:count - len(images)]]

    def kmodel_row(self, label: str, method: str, percentile: float, images: list[np.ndarray], cle: bool = False,
                   qat_epochs: int = 0) -> dict[str, Any]:
        """Quantize with `method` (after cross-layer equalisation with `cle`, then `qat_epochs` of quantization-aware
        training), compile, and evaluate the kmodel on the C runtime."""
        from deploy.export import qat_fine_tune
        from deploy.k210.compiler.driver import compile_tflite
        from deploy.predictors import kmodel_predictor
        from deploy.quantize.calibrate import quantize_keras
        from pipeline.atomic import write_bytes

        qat_cfg = self.cfg.with_values({"quantize.qat_epochs": qat_epochs})
        fine_tune = qat_fine_tune(qat_cfg, trained_build(qat_cfg) / "model.keras")
        started = time.perf_counter()
        calibrated = quantize_keras(self.model, self.float_bytes, images, method, percentile, cle, fine_tune)
        seconds = time.perf_counter() - started
        compiled = compile_tflite(calibrated.data)
        path = self.work / f"{label.replace(' ', '_')}_{len(images)}.kmodel"
        write_bytes(path, compiled.data)
        ap = self.ap50(kmodel_predictor(path, self.output_hwc, "fast"), f"kmodel {label} ({len(images)} images)")
        return {"label": label, "method": method, "percentile": percentile if method == "percentile" else None,
                "cle": cle, "qat_epochs": qat_epochs,
                "calibration_images": len(images), "kmodel_ap50": round(ap, 4), "calibration_s": round(seconds, 1),
                "kmodel_bytes": len(compiled.data)}


def recognizer_table(work: Path) -> dict[str, Any]:
    """The product recognizer (build/recognizer/model.keras): LFW dev accuracy of Keras and of the kmodel per
    method (no sweep), then quantization-aware training from the converter's ranges by each recognizer QAT loss
    (RECOGNIZER_QAT; its time is the calibration plus the fine-tuning); every embedding under the config's flip
    policy and centred by the model's embedding centre when its config has one."""
    from deploy.export import qat_fine_tune
    from deploy.k210.compiler.driver import compile_tflite
    from deploy.predictors import kmodel_embed
    from deploy.quantize.calibrate import quantize_keras
    from deploy.tflite import convert_float
    from models.recognizer.augment import eval_images
    from models.recognizer.centre import CENTRE_NAME, centre_images, embedding_centre, flip_average, policy_embed
    from models.recognizer.embedder import load_embedder
    from models.recognizer.evaluate import centred, keras_embed, lfw_metrics, lfw_set
    from models.recognizer.settings import RecognizerSettings
    from pipeline.atomic import write_bytes

    cfg = load_config(RECOGNIZER_CONFIG)
    path = trained_build(cfg) / "model.keras"
    if not path.is_file():
        return {"skipped": f"no trained recognizer at {path} (`invoke train --config configs/recognizer.yaml`)"}
    centre_path = path.parent / CENTRE_NAME
    if centre_images(cfg) and not centre_path.is_file():
        return {"skipped": f"no embedding centre at {centre_path} (`invoke export --config configs/recognizer.yaml`)"}
    centre, flip = embedding_centre(cfg, path.parent), flip_average(cfg)
    settings = RecognizerSettings.from_config(cfg)
    lfw = lfw_set(settings, cfg.resolve_path(cfg.recognizer.lfw), 0)
    crops = eval_images(lfw.crops)
    model = load_embedder(path)
    keras_embedding = centred(policy_embed(keras_embed(model), flip), centre)(crops)
    keras_accuracy = lfw_metrics(keras_embedding, lfw)[0]["accuracy_mean"]
    images = settings.sample_images("train", cfg.quantize.calib_images, cfg.train.seed)
    float_bytes = convert_float(model)

    def row(label: str, method: str, percentile: float, fine_tune=None) -> dict[str, Any]:
        started = time.perf_counter()
        calibrated = quantize_keras(model, float_bytes, images, method, percentile, fine_tune=fine_tune)
        seconds = time.perf_counter() - started
        compiled = compile_tflite(calibrated.data)
        kmodel = work / f"recognizer_{label.replace(' ', '_')}.kmodel"
        write_bytes(kmodel, compiled.data)
        embed = centred(policy_embed(kmodel_embed(kmodel, f"kmodel {label}"), flip), centre)
        accuracy = lfw_metrics(embed(crops), lfw)[0]["accuracy_mean"]
        return {"label": label, "keras_lfw_accuracy": round(keras_accuracy, 4),
                "kmodel_lfw_accuracy": round(accuracy, 4), "drop": round(accuracy - keras_accuracy, 4),
                "calibration_s": round(seconds, 1), "kmodel_bytes": len(compiled.data)}

    rows = [row(label, method, percentile) for label, method, percentile in VARIANTS]
    for loss, epochs in RECOGNIZER_QAT:
        qat_cfg = cfg.with_values({"quantize.qat_epochs": epochs, "quantize.qat_loss": loss})
        rows.append(row(f"qat {epochs} {loss}", BASELINE, 99.99, qat_fine_tune(qat_cfg, path, centre)))
    return {"model": str(path), "centre": str(centre_path) if centre is not None else None, "flip_average": flip,
            "lfw_pairs": int(lfw.used.sum()), "calibration_images": len(images),
            "keras_lfw_accuracy": round(keras_accuracy, 4), "methods": rows}


def _plot(result: dict[str, Any], png: Path) -> None:
    from pipeline.plotting import new_figure, save_figure

    recognizer = result.get("recognizer", {}).get("methods")
    fig, axes = new_figure(18 if recognizer else 12, 4.5, columns=3 if recognizer else 2)
    left, right = axes[0], axes[1]
    if recognizer:
        third = axes[2]
        third.barh([row["label"] for row in recognizer], [row["kmodel_lfw_accuracy"] for row in recognizer],
                   color="tab:green")
        keras = result["recognizer"]["keras_lfw_accuracy"]
        third.axvline(keras, color="black", linestyle="--", label=f"Keras float {keras:.3f}")
        for y, row in enumerate(recognizer):
            third.text(row["kmodel_lfw_accuracy"] + 0.002, y, f"{row['kmodel_lfw_accuracy']:.3f} "
                       f"({row['drop']:+.3f})", va="center", fontsize=8)
        third.set_xlim(min(row["kmodel_lfw_accuracy"] for row in recognizer) - 0.05, keras + 0.05)
        third.set_xlabel("kmodel LFW dev accuracy (KPU simulator)")
        third.set_title("Recognizer")
        third.legend(loc="lower right", fontsize=8)
    rows = result["methods"]
    labels = [row["label"] for row in rows]
    left.barh(labels, [row["kmodel_ap50"] for row in rows], color="tab:blue")
    left.axvline(result["keras_ap50"], color="black", linestyle="--", label=f"Keras float {result['keras_ap50']:.3f}")
    for y, row in enumerate(rows):
        left.text(row["kmodel_ap50"] + 0.002, y, f"{row['kmodel_ap50']:.3f} ({row['drop']:+.3f})", va="center",
                  fontsize=8)
    low = min(row["kmodel_ap50"] for row in rows + result["sweep"])
    left.set_xlim(max(0.0, low - 0.05), max(result["keras_ap50"], max(r["kmodel_ap50"] for r in rows)) + 0.04)
    left.set_xlabel("kmodel val AP@0.5 (KPU simulator)")
    left.set_title(f"Face-mask detector: methods, {result['calibration_images']} images")
    left.legend(loc="lower right", fontsize=8)
    for label in sorted({row["label"] for row in result["sweep"]}):
        points = [row for row in result["sweep"] if row["label"] == label]
        right.plot([p["calibration_images"] for p in points], [p["kmodel_ap50"] for p in points], marker="o",
                   label=label)
    right.axhline(result["keras_ap50"], color="black", linestyle="--", label="Keras float")
    right.axvline(result["train_images"] + 0.5, color="grey", linestyle=":", label="beyond: mirrored copies")
    right.set_xscale("log")
    right.set_xlabel("calibration images")
    right.set_ylabel("kmodel val AP@0.5")
    right.set_title("Calibration-set size")
    right.legend(fontsize=8)
    save_figure(fig, png)


def run(out_dir: Path) -> dict[str, Any]:
    """The method table and the calibration-size sweep, with a two-panel PNG."""
    if not (SHARED_DATA / "facemask").is_dir():
        return {"skipped": f"the face-mask data is absent ({SHARED_DATA / 'facemask'})"}
    cfg = load_config(CONFIG)
    if not (trained_build(cfg) / "model.keras").is_file():
        raise PipelineError("no trained face-mask detector", path=trained_build(cfg) / "model.keras",
                            expected="`invoke train --config configs/facemask.yaml` (or copy a finished run's "
                                     "build/facemask/ there)")
    bench = Bench(out_dir / "quantization")
    from models.evaluate import keras_predictor

    keras_ap = bench.ap50(keras_predictor(bench.model), "keras")
    count = cfg.quantize.calib_images
    images = bench.calibration(count)
    methods = [bench.kmodel_row(label, method, percentile, images) for label, method, percentile in VARIANTS]
    plain_best = max(methods, key=lambda row: row["kmodel_ap50"])
    for label, method, percentile in [v for v in VARIANTS if v[0] in {BASELINE, plain_best["label"]}]:
        methods.append(bench.kmodel_row(f"{label} + cle", method, percentile, images, cle=True))
    methods.append(bench.kmodel_row(f"qat {QAT_EPOCHS} + cle", BASELINE, 99.99, images, cle=True,
                                    qat_epochs=QAT_EPOCHS))
    for row in methods:
        row["keras_ap50"] = round(keras_ap, 4)
        row["drop"] = round(row["kmodel_ap50"] - keras_ap, 4)
    baseline = next(row for row in methods if row["label"] == BASELINE)
    for row in methods:
        row["drop_minus_baseline_drop"] = round(row["drop"] - baseline["drop"], 4)
    best = max(methods, key=lambda row: (row["kmodel_ap50"], -row["calibration_s"]))
    best_ptq = max((row for row in methods if not row["qat_epochs"]),
                   key=lambda row: (row["kmodel_ap50"], -row["calibration_s"]))
    sweep = []
    chosen = [row for row in methods if row["label"] in {BASELINE, best_ptq["label"]}]
    for row in chosen:
        for size in (*SWEEP, 2 * bench.train_count):
            if size == count:
                sweep.append(dict(row))
                continue
            sweep.append(bench.kmodel_row(row["label"], row["method"], row["percentile"] or 99.99,
                                          bench.calibration(size), row["cle"]))
    for row in sweep:
        row["drop"] = round(row["kmodel_ap50"] - keras_ap, 4)
    result = {"model": str(trained_build(cfg) / "model.keras"), "val_images": len(bench.val.images),
              "train_images": bench.train_count, "calibration_images": count, "keras_ap50": round(keras_ap, 4),
              "baseline": BASELINE, "best": best["label"], "best_ptq": best_ptq["label"], "methods": methods,
              "sweep": sweep,
              "sweep_note": f"{2 * bench.train_count} = the {bench.train_count} training images and their mirror "
                            "images (the set has no more)"}
    result["recognizer"] = recognizer_table(bench.work)
    _plot(result, out_dir / "quantization.png")
    return result
