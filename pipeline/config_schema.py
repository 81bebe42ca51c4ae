"""The config's schema: one frozen dataclass per section, each field a config key with its type, its default, its
rule (pipeline.values.Rule: type, range, units) and its documentation. pipeline/config.py loads files against it.

A key is declared once, with `setting(default, rule, doc)`; the default is written as in YAML (lists, not tuples).
The field's annotation is the type code reads: lists become tuples, float keys are floats even when the file
holds a whole number, and a `map` key is a read-only mapping."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from types import MappingProxyType
from typing import Any

from pipeline.values import Rule, count, fraction, number, positive

NAME = Rule("str")  # names whose list lives with the code that uses them (model.family, deploy.board, ...)
PATH = Rule("str", nullable=True)  # relative to the config file's folder, or absolute; None: not given


def typed(rule: Rule, value: Any) -> Any:
    """A checked YAML value as code reads it: lists as tuples, a map read-only, a float rule's (or a pair's) number a
    float."""
    if value is None:
        return None
    if rule.kind == "float":
        return float(value)
    if rule.kind == "pairs":
        return tuple(tuple(float(v) for v in pair) for pair in value)
    if rule.kind in ("size", "names", "strings"):
        return tuple(value)
    if rule.kind == "map":
        return MappingProxyType(dict(value))
    return value


def setting(default: Any, rule: Rule, doc: str, *, key: str | None = None) -> Any:
    """A config key: its default (as written in YAML), the rule every value is checked by, and what it means; `key`
    names it in YAML when that is not the attribute's name (a Python keyword such as `class`)."""
    metadata = {"default": default, "rule": rule, "doc": doc, "key": key}
    value = typed(rule, default)
    if isinstance(value, Mapping):
        return field(default_factory=lambda: typed(rule, default), metadata=metadata)
    return field(default=value, metadata=metadata)


def subsection(cls: type, doc: str) -> Any:
    """A nested section (dataset.synthetic, train.loss_weights)."""
    return field(default_factory=cls, metadata={"section": cls, "doc": doc})


def key_of(item: Field) -> str:
    """The YAML key of a field."""
    return item.metadata.get("key") or item.name


def from_values(cls: type, values: Mapping[str, Any]) -> Any:
    """The typed section of a (checked) values mapping; a key it lacks keeps its default."""
    kwargs = {}
    for item in fields(cls):
        if key_of(item) not in values:
            continue
        value = values[key_of(item)]
        sub = item.metadata.get("section")
        kwargs[item.name] = from_values(sub, value) if sub else typed(item.metadata["rule"], value)
    return cls(**kwargs)


def default_values(cls: type) -> dict[str, Any]:
    """A section's defaults as the plain nested dict a YAML file would hold."""
    return {key_of(item): default_values(item.metadata["section"]) if "section" in item.metadata
            else copy.deepcopy(item.metadata["default"]) for item in fields(cls)}


def rules(cls: type, prefix: str = "") -> dict[str, Rule]:
    """The rule of every key of a section, by dotted key."""
    found: dict[str, Rule] = {}
    for item in fields(cls):
        dotted = f"{prefix}{key_of(item)}"
        if "section" in item.metadata:
            found.update(rules(item.metadata["section"], dotted + "."))
        else:
            found[dotted] = item.metadata["rule"]
    return found


@dataclass(frozen=True)
class SyntheticSection:
    """dataset.synthetic: the generated face set (dataset.format synthetic)."""

    train_count: int = setting(240, count(1, "images"), "training images generated")
    val_count: int = setting(60, count(1, "images"), "validation images generated")
    size: tuple[int, int] = setting([320, 256], Rule("size", length=2, low=32, unit="width, height in pixels"),
                                    "image width, height")
    seed: int = setting(20261122, count(0), "random seed of the generator")


@dataclass(frozen=True)
class DatasetSection:
    """dataset: where the images and their boxes come from."""

    format: str = setting("synthetic", NAME, "voc | yolo | wider | folders | synthetic")
    train: str | None = setting(None, PATH, "the training split: a path relative to the config file's folder, or "
                                            "absolute")
    val: str | None = setting(None, PATH, "the validation split (a path, like train)")
    classes: tuple[str, ...] = setting(["face"], Rule("names"), "class names in output order")
    class_map: Mapping[str, str] = setting({}, Rule("map"), "source name -> class name (merges classes)")
    classes_file: str | None = setting(None, PATH, "YOLO txt: the classes file")
    images_root: str | None = setting(None, PATH, "WIDER FACE: the image folder")
    paths_outside_root: bool = setting(False, Rule("bool"), "allow annotation files to name images outside their "
                                                            "split/image folder")
    synthetic: SyntheticSection = subsection(SyntheticSection, "the generated set (format synthetic)")


@dataclass(frozen=True)
class ModelSection:
    """model: the network."""

    family: str = setting("tiny", NAME, "tiny | darknet19 | skip_darknet19 | mobilenet_v1")
    width: float = setting(0.25, number(0, 4, open_low=True, unit="width multiplier"), "channel width multiplier")
    input_size: tuple[int, int] = setting([320, 256], Rule("size", length=2, low=8, unit="width, height in pixels"),
                                          "input width, height")
    anchors: tuple[tuple[float, float], ...] | None = setting(
        None, Rule("pairs", nullable=True), "list of [w, h] in grid cells; None: computed by `invoke data --anchors`")
    num_anchors: int = setting(5, count(1), "anchors per grid cell when anchors are computed")
    activation: str = setting("leaky", NAME, "leaky (LeakyReLU 0.1) | relu | relu6")
    passthrough_filters: int | None = setting(None, count(0, nullable=True),
                                              "skip_darknet19: 1x1 conv channels before the reorg; None: 64*width, "
                                              "0: none")
    output_stride: int = setting(32, Rule("int", choices=(16, 32)),
                                 "32 (YOLOv2) | 16: the deepest stage skips its pool, the grid is 4x finer")
    min_channels: int = setting(4, count(4, "filters"), "every conv has at least this many filters (>= 4, the KPU "
                                                        "minimum)")
    task: str = setting("detector", Rule("str", choices=("detector", "recognizer", "attendance")),
                        "detector | recognizer (an embedding network: see the recognizer section) | attendance")


@dataclass(frozen=True)
class LossWeightsSection:
    """train.loss_weights: the YOLOv2 loss terms' weights."""

    coord: float = setting(1.0, number(0), "box coordinates")
    obj: float = setting(5.0, number(0), "objectness of cells with a face")
    noobj: float = setting(1.0, number(0), "objectness of cells without one")
    class_: float = setting(1.0, number(0), "class scores (YAML key `class`, a Python keyword)", key="class")


@dataclass(frozen=True)
class TrainSection:
    """train: the training run (detector and recognizer)."""

    epochs: int = setting(30, count(1), "epochs scheduled")
    batch_size: int = setting(16, count(1, "images"), "the global batch, split evenly over the replicas")
    learning_rate: float = setting(1e-3, positive(), "peak learning rate (reference: one replica)")
    warmup_epochs: int = setting(2, count(0), "linear warm-up epochs")
    patience: int = setting(10, count(1, "epochs"), "early stopping: epochs without a better validation score")
    seed: int = setting(20261122, count(0), "random seed (weights, shuffling, sampling)")
    budget_mib: float = setting(1.0, positive("MiB"), "the model's uint8 size budget")
    weight_decay: float = setting(5e-4, number(0), "AdamW weight decay")
    ignore_thresh: float = setting(0.6, fraction("IoU"), "no no-object loss for predictions overlapping a face by "
                                                         "at least this IoU")
    rescore: bool = setting(True, Rule("bool"), "objectness target is the IoU (YOLOv2 rescore)")
    augment: bool = setting(True, Rule("bool"), "augment the training images")
    max_boxes: int = setting(50, count(1, "boxes per image"), "boxes kept per image")
    loss_weights: LossWeightsSection = subsection(LossWeightsSection, "the loss terms' weights")
    time_limit_minutes: float = setting(0.0, number(0, unit="minutes, 0 = no limit"),
                                        "0 = no limit; stops before an epoch that would end after it")
    quiet: bool = setting(False, Rule("bool"), "one line per epoch instead of a progress bar (for logs)")
    bn_l1: float = setting(0.0, number(0, 10, unit="L1 weight on BN gammas"),
                           "sparsity training (network slimming): L1 penalty (lambda) on every BN gamma, 0 = off; "
                           "the trained model's |gamma| histogram goes to gamma_hist.png/.json; prune.criterion "
                           "gamma then finds the channels it drove to zero")
    distribute: str = setting("none", Rule("str", choices=("none", "mirrored", "multi_worker")),
                              "scale-out (models/distribute.py): none (one device) | mirrored (this host's GPUs, or "
                              "the devices listed) | multi_worker (the hosts of the TF_CONFIG environment variable)")
    devices: tuple[str, ...] = setting([], Rule("strings"), "mirrored: the devices, e.g. [\"/gpu:0\", \"/gpu:1\"]; "
                                                            "empty: this host's GPUs")
    lr_scaling: str = setting("none", Rule("str", choices=("none", "linear")),
                              "linear multiplies learning_rate by the replica count, none keeps it")


@dataclass(frozen=True)
class RecognizerSection:
    """recognizer (model.task: recognizer): the embedding network, its training and its evaluation."""

    embedding_size: int = setting(128, count(4, "values"), "embedding size")
    head_channels: int = setting(32, count(4, "channels"), "1x1 channels before the Dense head")
    crop_margin: float = setting(0.25, number(0, 2, unit="box sides on each side"),
                                 "the crop policy's margin: fraction of the box side added on each side")
    loss: str = setting("arcface", NAME, "the training loss: softmax | cosface | arcface")
    scale: float = setting(32.0, positive(), "the margin loss's scale")
    margin: float = setting(0.5, number(0, unit="cosine or radians"), "the margin (CosFace: cosine, ArcFace: "
                                                                       "radians)")
    distill: str = setting("none", NAME, "distillation from a teacher: none | dlib")
    distill_weight: float = setting(4.0, number(0), "the distillation loss's weight")
    class_weight: float = setting(1.0, number(0), "scales the margin loss (0: pure distillation)")
    extra_train: tuple[str, ...] = setting([], Rule("strings"), "more identity folders to train on")
    unlabelled: tuple[str, ...] = setting([], Rule("strings"),
                                          "VOC split folders whose annotated faces are distillation-only crops (they "
                                          "need a teacher)")
    unlabelled_min_side: int = setting(32, count(4, "pixels"), "unlabelled faces need at least this longer box side")
    val_identities: int = setting(30, count(2, "identities"), "identities held back to choose the best epoch")
    stranger_identities: int = setting(50, count(0, "identities"), "identities held out as strangers")
    held_out_identities: tuple[str, ...] = setting([], Rule("strings"),
                                                   "identities never trained on (the people a classroom enrolls)")
    min_images: int = setting(2, count(2, "images"), "the fewest images an identity needs")
    gray_prob: float = setting(0.3, fraction("probability"), "share of training crops turned grey (LFW is grey)")
    lfw: str | None = setting(None, PATH, "evaluation: the LFW folder (pairs_dev.txt + images/)")
    eval_pairs_per_fold: int = setting(0, count(0, "pairs, 0 = all"), "the first pairs of each LFW fold (0: all 600)")
    classroom: str | None = setting(None, PATH, "evaluation: a VOC identity set whose students are enrolled from "
                                                "train photos and identified in val photos")
    eval_strangers: int = setting(0, count(0, "images, 0 = all"), "classroom strangers (0: all)")
    centre_images: int = setting(0, count(0, "images, 0 = no embedding centre"),
                                 "the export stage averages the L2-normalised embeddings of this many "
                                 "training-identity crops into embedding_centre.json, subtracted before the final L2 "
                                 "norm by evaluation and the firmware (0: no centre)")
    flip_average: bool = setting(False, Rule("bool"), "embed each face crop and its mirror image (two KPU runs per "
                                                      "face) and add their L2-normalised embeddings before the "
                                                      "normalisation (models/recognizer/centre.py); the centre too")


@dataclass(frozen=True)
class AttendanceSection:
    """attendance (model.task: attendance): the firmware that names people, from a detector and a recognizer."""

    detector: str | None = setting(None, PATH, "the detector's config (relative to this file)")
    recognizer: str | None = setting(None, PATH, "the recognizer's config (relative to this file)")
    people: str | None = setting(None, PATH, "people to enroll: a folder per person (None: dataset.train, a VOC set "
                                             "whose object names are the people)")
    session: str | None = setting(None, PATH, "a session's photos (None: dataset.val, whose names are the ground "
                                              "truth)")
    strangers: int = setting(0, count(0, "photos"), "photos of the recognizer's held-out strangers added to a session")
    max_faces: int = setting(5, count(1, "faces per frame"), "faces named per frame")
    enroll_frames: int = setting(3, count(1, "frames"), "frames `face_enroll` reads by default")
    threshold: float = setting(0.5, fraction("cosine similarity"), "the similarity at or above which a face is named")
    capacity: int = setting(512, count(1, "people"), "the database's capacity")
    detector_address: int = setting(0x300000, count(0, "flash byte address"), "the detector kmodel's flash address")
    recognizer_address: int = setting(0x900000, count(0, "flash byte address"),
                                      "the recognizer kmodel's flash address")
    db_address: int = setting(0xF00000, count(0, "flash byte address"), "the database's flash address")
    test_hooks: bool = setting(False, Rule("bool"), "the firmware's test hooks (`face_db_fault`, a power cut in the "
                                                    "middle of a save)")
    tune_impostors: int = setting(0, count(0, "photos, 0 = use attendance.threshold"),
                                  "> 0: `enroll` sets the threshold instead, from that many photos of the "
                                  "recognizer's held-back identities (never trained on, not the session's strangers)")
    target_rejection: float = setting(0.95, fraction("share of impostor photos"),
                                      "tune_impostors: the threshold is the lowest that rejects this share")


@dataclass(frozen=True)
class PruneSection:
    """prune: which filters go and how many."""

    sparsity: float = setting(0.0, number(0, 1, open_high=True, unit="fraction of filters"),
                              "a uniform sparsity: the same share of every conv")
    finetune_epochs: int = setting(5, count(0), "fine-tuning epochs per round")
    finetune_lr_scale: float = setting(0.1, positive(), "fine-tuning learning rate: this x train.learning_rate")
    min_filters: int = setting(4, count(1, "filters"), "every conv keeps at least this many (the KPU needs 4)")
    criterion: str = setting("gamma", Rule("str", choices=("gamma", "l1")),
                             "gamma: |BN gamma|, l1: the filter's L1 norm")
    allocation: str = setting("uniform", Rule("str", choices=("uniform", "global_gamma", "sensitivity")),
                              "how a global target is allocated over the convs: uniform | global_gamma (one "
                              "threshold on the scores) | sensitivity (the per-layer curves of `invoke prune "
                              "--sensitivity`)")
    target_metric: str = setting("macs", Rule("str", choices=("macs", "params", "kmodel_bytes", "latency")),
                                 "a global target's metric (latency: the compiler's cycle-model estimate)")
    target_reduction: float = setting(0.0, number(0, 1, open_high=True, unit="fraction of prune.target_metric"),
                                      "a global target: target_metric reduced by this share")
    round_to: int = setting(4, count(1, "channels"), "filters kept are rounded up to a multiple of this (4: the KPU "
                                                     "shares a RAM line between 4 channels of maps up to 16 px wide)")
    rounds: int = setting(1, count(1), "prune + fine-tune rounds toward the target")
    distill: float = setting(0.0, number(0, unit="weight"), "> 0: fine-tuning also matches the unpruned model's "
                                                            "head outputs, with that weight")


@dataclass(frozen=True)
class QuantizeSection:
    """quantize: the uint8 model's calibration."""

    calib_images: int = setting(200, count(1, "images"), "training images that calibrate the uint8 model")
    method: str = setting("tflite", Rule("str", choices=("tflite", "minmax", "percentile", "mse", "kl")),
                          "per-tensor activation ranges: tflite (the converter's own min/max), or the project's from "
                          "the float model's calibration histograms, written into the uint8 TFLite: minmax, "
                          "percentile, mse (least squared error between float and fake-quantized values), kl "
                          "(TensorRT's entropy calibration, asymmetric)")
    percentile: float = setting(99.99, number(0, 100, open_low=True,
                                              unit="percent of the values inside the range, per tail"),
                                "method percentile: each tail clipped to 100 - percentile %")
    cle: bool = setting(False, Rule("bool"), "fold batch norm and equalise consecutive conv pairs' weight ranges "
                                             "(cross-layer equalisation with bias absorption, deploy/quantize/cle.py) "
                                             "before converting")
    qat_epochs: int = setting(0, count(0, "epochs"), "> 0: then quantization-aware training from those ranges "
                                                     "(fake-quantised per-channel weights, learned activation clips, "
                                                     "BN folded; deploy/quantize/qat.py)")
    qat_learning_rate: float = setting(0.0001, positive(), "quantization-aware training's learning rate")
    qat_loss: str = setting("distill", Rule("str", choices=("distill", "rcm")),
                            "a recognizer's QAT loss (a detector fine-tunes on its training loss): distill (1 - "
                            "cosine to the float model's embedding of the same crop) or rcm (the rotation-consistent "
                            "margin on the CosFace / ArcFace loss over the training identities, plus "
                            "qat_distill_weight x distill; models/recognizer/rcm.py)")
    qat_distill_weight: float = setting(50.0, number(0, unit="weight"), "rcm: the distillation term's weight")
    qat_kurtosis: float = setting(0.0, number(0, unit="weight"),
                                  "> 0: QAT also draws each kernel's per-channel weights toward a compact (uniform, "
                                  "kurtosis 1.8) distribution with this weight on the mean (kurtosis - 1.8)^2 "
                                  "(KURE; deploy/quantize/fake_quant.kurtosis_penalty)")


@dataclass(frozen=True)
class ExportSection:
    """export: the TFLite models."""

    held_images: int = setting(8, count(0, "images"), "validation images kept beside the models for checks")


@dataclass(frozen=True)
class EvalSection:
    """eval: `invoke eval`."""

    kmodel_engine: str = setting("fast", Rule("str", choices=("fast", "reference")),
                                 "how the kmodel runs: fast (the C runtime, 15-30x quicker, the same bytes) or "
                                 "reference (the NumPy simulator that defines them)")


@dataclass(frozen=True)
class CompileSection:
    """compile: the kmodel compiler."""

    budget_mib: float = setting(5.5, positive("MiB"), "the kmodel's size budget")
    fuse_leaky: bool = setting(False, Rule("bool"), "fold LeakyReLU into the conv's KPU activation table (one layer, "
                                                    "not bit-exact to LiteRT)")
    weight_bits: int = setting(8, Rule("int", choices=(8, 16)),
                               "the kmodel's one global weight width (16: weights from the export stage's "
                               "model_quantized_float.tflite, activation ranges still from the uint8 TFLite; kpu.c "
                               "loads all-8 or all-16 only)")


@dataclass(frozen=True)
class DeploySection:
    """deploy: the board, its detection thresholds and flashing."""

    board: str = setting("sim", NAME, "the board (deploy/firmware/boards.py)")
    port: str | None = setting(None, PATH, "the serial port")
    kmodel_address: int = setting(0x300000, count(0, "flash byte address"), "the kmodel's flash address")
    score_threshold: float = setting(0.5, fraction("score"), "detections scoring below are dropped")
    nms_iou: float = setting(0.3, fraction("IoU"), "non-maximum suppression's IoU")
    board_type: str = setting("auto", NAME, "flashing: reset sequence (auto | dan | bit | trainer | kd233 | goE | "
                                            "maixduino | bit_mic | goD | generic)")
    baud: int = setting(1500000, count(1, "baud"), "flash-stage baud rate")
    isp_prog: str | None = setting(None, PATH, "flash-stage program file (None: the installed kflash package)")
    stub_dialect: str | None = setting(None, PATH, "its dialect (None: identified by SHA-256; vowstar | sipeed | "
                                                   "ktool)")


@dataclass(frozen=True)
class FirmwareSection:
    """firmware: the rendered RT-Thread glue."""

    name: str | None = setting(None, PATH, "None: the config's name")
    kmodel_storage: str = setting("flash", NAME, "embedded | flash (at deploy.kmodel_address)")
    max_candidates: int = setting(256, count(1), "detections kept before non-maximum suppression")
    camera: str = setting("ov5640", NAME, "the k210 board's sensor (ov5640 | ov2640)")
    rounding: str = setting("reference", NAME, "reference | v0.1 (soft-KPU activation rounding, compile-time "
                                               "switch)")
    kpu_kernel: str = setting("fast", NAME, "fast | reference (the soft KPU's convolution kernel: "
                                            "firmware/runtime/kpu_soft.c or the plain loops of kpu_ref.c, the same "
                                            "bytes)")
    run_timeout_s: float = setting(300, positive("seconds"), "a firmware run's time limit")
    rt_ai: str = setting("ours", Rule("str", choices=("ours", "rtak")),
                         "the model runtime the RT-Thread builds use: ours (face_ai/rt_ai) | rtak (RT-AK's "
                         "rt_ai_lib: the BSP's own, else rtak_lib, else $RTAK_LIB, else ../shared)")
    rtak_lib: str | None = setting(None, PATH, "rt_ai rtak: RT-AK's library folder")
