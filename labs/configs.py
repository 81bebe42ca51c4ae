"""The lab configs, derived from the project's own configs: the course's face-mask detector (labs 2-7), the demo
(lab 1) and the classroom attendance system (lab 8). `fast` gives the tiny versions CI walks in minutes."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from pipeline.config import REPO_ROOT, load_config

CONFIGS = REPO_ROOT / "configs"
# the keys of the source configs that name files, made absolute so a lab config works from build/labs/
PATH_KEYS = ("dataset.train", "dataset.val", "dataset.classes_file", "dataset.images_root", "recognizer.lfw",
             "recognizer.classroom", "recognizer.extra_train", "recognizer.unlabelled")
TINY_SYNTHETIC = {
    "dataset": {"format": "synthetic", "classes": ["face"],
                "synthetic": {"train_count": 240, "val_count": 12, "size": [224, 224], "seed": 7}},
    "model": {"family": "tiny", "width": 0.125, "input_size": [224, 224], "num_anchors": 3, "output_stride": 32,
              "min_channels": 4},
    "train": {"epochs": 20, "batch_size": 16, "patience": 20, "warmup_epochs": 2, "time_limit_minutes": 0,
              "quiet": True},
    "quantize": {"calib_images": 32}, "export": {"held_images": 2}}


def _get(values: dict[str, Any], dotted: str) -> Any:
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set(values: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = values
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`base` with `changes` applied section by section (a nested dict merges, anything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        out[key] = merged(out.get(key, {}), value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else copy.deepcopy(value)
    return out


def derived(source: str, changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """The YAML of configs/<source> with its file paths made absolute, then `changes` applied."""
    path = CONFIGS / source
    cfg = load_config(path)
    values = yaml.safe_load(path.read_text(encoding="utf-8"))
    for dotted in PATH_KEYS:
        value = _get(values, dotted)
        if isinstance(value, list):
            _set(values, dotted, [str(cfg.resolve_path(v)) for v in value])
        elif value is not None:
            _set(values, dotted, str(cfg.resolve_path(value)))
    return merged(values, changes or {})


def demo(fast: bool) -> dict[str, Any]:
    """Lab 1: the README's demo (configs/demo.yaml); fast: fewer epochs and validation images."""
    return derived("demo.yaml", merged(TINY_SYNTHETIC, {"train": {"epochs": 5}}) if fast else None)


def detector(fast: bool) -> dict[str, Any]:
    """Labs 2-7: the product's face-mask detector (configs/facemask.yaml) trained for 30 epochs, which fits a
    90-minute lab on 2 cores, and quantized without QAT (lab 5 compares post-training methods); fast: a tiny
    detector on the synthetic set."""
    full = derived("facemask.yaml", {"train": {"epochs": 30, "patience": 30, "time_limit_minutes": 30,
                                               "quiet": True}, "quantize": {"qat_epochs": 0}})
    return {**merged(full, TINY_SYNTHETIC), "dataset": TINY_SYNTHETIC["dataset"]} if fast else full


def pruned(fast: bool) -> dict[str, Any]:
    """Lab 4: lab 3's detector pruned in its own build folder to 40 % fewer MACs, allocated by the per-layer
    sensitivity curves, and fine-tuned with distillation from the unpruned model."""
    return merged(detector(fast), {"prune": {"target_metric": "macs", "target_reduction": 0.4,
                                             "allocation": "sensitivity", "distill": 1.0,
                                             "finetune_epochs": 2 if fast else 6}})


def classroom(fast: bool, subsets: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Lab 8: the attendance system (configs/classroom.yaml) as three configs: its face detector, its recognizer and
    the attendance config naming both; fast: a tiny detector and recognizer trained on the small `subsets` that
    `labs.subsets` writes (a few students, a few CelebA identities)."""
    if not fast:
        return {"lab_face_detector": derived("classroom_detector.yaml"),
                "lab_recognizer": derived("recognizer.yaml"),
                "lab_classroom": derived("classroom.yaml", {"attendance": {
                    "detector": "lab_face_detector.yaml", "recognizer": "lab_recognizer.yaml"}})}
    assert subsets is not None, "the fast classroom configs need the subsets labs.subsets wrote"
    return {
        "lab_face_detector": derived("classroom_detector.yaml", {
            "model": {"family": "tiny", "width": 0.125, "input_size": [224, 224], "num_anchors": 3},
            "train": {"epochs": 20, "patience": 20, "time_limit_minutes": 0},
            "quantize": {"calib_images": 32}, "export": {"held_images": 2}}),
        "lab_recognizer": {
            "dataset": {"format": "folders", "train": str(subsets["identities"])},
            "model": {"task": "recognizer", "family": "mobilefacenet", "width": 0.125, "min_channels": 8,
                      "input_size": [112, 112]},
            "recognizer": {"loss": "cosface", "margin": 0.35, "scale": 30.0, "val_identities": 3,
                           "stranger_identities": 3},
            "train": {"epochs": 1, "batch_size": 8, "warmup_epochs": 0, "quiet": True},
            "quantize": {"calib_images": 16}, "export": {"held_images": 2}},
        "lab_classroom": {
            "dataset": {"format": "voc", "train": str(subsets["classroom"] / "train"),
                        "val": str(subsets["classroom"] / "val"), "classes": subsets["students"]},
            "model": {"task": "attendance"},
            "attendance": {"detector": "lab_face_detector.yaml", "recognizer": "lab_recognizer.yaml",
                           "strangers": 2, "capacity": 16, "max_faces": 2, "threshold": 0.5},
            "deploy": {"board": "sim", "score_threshold": 0.3}}}


QUANTIZATION_VARIANTS = {  # lab 5: config name -> its quantize section (the converter's default first)
    "lab_ptq": {"method": "tflite", "cle": False, "calib_images": 200},
    "lab_ptq_kl": {"method": "kl", "cle": False, "calib_images": 200},
    "lab_ptq_cle": {"method": "tflite", "cle": True, "calib_images": 597},
    "lab_qat": {"method": "tflite", "cle": True, "calib_images": 597, "qat_epochs": 2},
}


def quantized(name: str, fast: bool) -> dict[str, Any]:
    """Lab 5: lab 3's detector exported with one of QUANTIZATION_VARIANTS (fast: 32 calibration images, one QAT
    epoch)."""
    section = dict(QUANTIZATION_VARIANTS[name])
    if fast:
        section.update(calib_images=32, **({"qat_epochs": 1} if section.get("qat_epochs") else {}))
    return merged(detector(fast), {"quantize": section})
