"""Pipeline configuration: one YAML file per pipeline, defaults filled in, flags override, every field checked."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import PipelineError
from pipeline.text_files import read_utf8
from pipeline.values import Rule, count, fraction, number, positive, yaml_value

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# Every key a config may hold, with its default. A key not listed here is refused, so a typo never passes silently.
DEFAULTS: dict[str, Any] = {
    "dataset": {
        "format": "synthetic",  # voc | yolo | wider | folders | synthetic
        "train": None,  # path (relative to the config file's folder, or absolute)
        "val": None,
        "classes": ["face"],  # class names in output order
        "class_map": {},  # source name -> class name (merge classes)
        "classes_file": None,  # YOLO txt: classes file
        "images_root": None,  # WIDER FACE: image folder
        "paths_outside_root": False,  # allow annotation files to name images outside their split/image folder
        "synthetic": {"train_count": 240, "val_count": 60, "size": [320, 256], "seed": 20261122},
    },
    "model": {
        "family": "tiny",  # tiny | darknet19 | skip_darknet19 | mobilenet_v1
        "width": 0.25,
        "input_size": [320, 256],  # width, height
        "anchors": None,  # list of [w, h] in grid cells; None -> computed by `invoke data --anchors`
        "num_anchors": 5,
        "activation": "leaky",  # leaky (LeakyReLU 0.1) | relu | relu6
        "passthrough_filters": None,  # skip_darknet19: 1x1 conv channels before the reorg; None: 64*width, 0: none
        "output_stride": 32,  # 32 (YOLOv2) | 16: the deepest stage skips its pool, the grid is 4x finer
        "min_channels": 4,  # every conv has at least this many filters (>= 4, the KPU minimum)
        "task": "detector",  # detector | recognizer (an embedding network: see the recognizer section) | attendance
    },
    "train": {"epochs": 30, "batch_size": 16, "learning_rate": 1e-3, "warmup_epochs": 2, "patience": 10,
              "seed": 20261122, "budget_mib": 1.0,
              "weight_decay": 5e-4, "ignore_thresh": 0.6, "rescore": True, "augment": True, "max_boxes": 50,
              "loss_weights": {"coord": 1.0, "obj": 5.0, "noobj": 1.0, "class": 1.0},
              "time_limit_minutes": 0.0,  # 0 = no limit; stops before an epoch that would end after it
              "quiet": False,  # one line per epoch instead of a progress bar (for logs)
              # sparsity training (network slimming): L1 penalty (lambda) on every BN gamma, 0 = off; the trained
              # model's |gamma| histogram goes to gamma_hist.png/.json; prune.criterion gamma then finds the
              # channels it drove to zero
              "bn_l1": 0.0,
              # scale-out (models/distribute.py): none (one device) | mirrored (this host's GPUs, or the devices
              # listed, e.g. ["/gpu:0", "/gpu:1"]) | multi_worker (the hosts of the TF_CONFIG environment variable);
              # batch_size stays the global batch, split evenly over the replicas; lr_scaling linear multiplies
              # learning_rate by the replica count (reference: one replica), none keeps it
              "distribute": "none", "devices": [], "lr_scaling": "none"},
    # recognizer (model.task: recognizer): embedding size, 1x1 channels before the Dense head, the crop policy's
    # margin (fraction of the box side added on each side), the training loss (softmax | cosface | arcface) with its
    # scale and margin (CosFace: cosine, ArcFace: radians), distillation from a teacher (none | dlib) and its weight,
    # more identity folders to train on, identities held back to choose the best epoch and held out as strangers,
    # identities never trained on (the people a classroom enrolls), the fewest images an identity needs, and the
    # share of training crops turned grey (LFW is grey); class_weight scales the margin loss (0: pure distillation);
    # unlabelled: VOC split folders whose annotated faces of at least unlabelled_min_side pixels (longer box side)
    # are distillation-only crops (they need a teacher); evaluation: lfw, the LFW folder (pairs_dev.txt + images/),
    # with the first eval_pairs_per_fold pairs of each fold (0: all 600), and classroom, a VOC identity set whose
    # students are enrolled from train photos and identified in val photos against eval_strangers strangers (0: all)
    "recognizer": {"embedding_size": 128, "head_channels": 32, "crop_margin": 0.25, "loss": "arcface", "scale": 32.0,
                   "margin": 0.5, "distill": "none", "distill_weight": 4.0, "class_weight": 1.0, "extra_train": [],
                   "unlabelled": [], "unlabelled_min_side": 32, "val_identities": 30,
                   "stranger_identities": 50, "held_out_identities": [], "min_images": 2, "gray_prob": 0.3,
                   "lfw": None, "eval_pairs_per_fold": 0, "classroom": None, "eval_strangers": 0},
    # attendance (model.task: attendance): the firmware that names people, built from a detector config and a
    # recognizer config (paths relative to this file); people to enroll: a folder per person (None: this config's
    # dataset.train, a VOC set whose object names are the people); a session's photos (None: dataset.val, whose
    # names are the ground truth) plus this many photos of the recognizer's held-out strangers; faces named per
    # frame, frames `face_enroll` reads by default, the similarity at or above which a face is named, the database's
    # capacity (people), the flash addresses of the two kmodels and of the database, and the firmware's test hooks
    # (`face_db_fault`, a power cut in the middle of a save); tune_impostors > 0: `enroll` sets the threshold instead,
    # the lowest that rejects target_rejection of that many photos of the recognizer's held-back identities (never
    # trained on, and not the strangers of the session)
    "attendance": {"detector": None, "recognizer": None, "people": None, "session": None, "strangers": 0,
                   "max_faces": 5, "enroll_frames": 3, "threshold": 0.5, "capacity": 512,
                   "detector_address": 0x300000, "recognizer_address": 0x900000, "db_address": 0xF00000,
                   "test_hooks": False, "tune_impostors": 0, "target_rejection": 0.95},
    # prune: which filters go (criterion gamma: |BN gamma|, l1: the filter's L1 norm) and how many: a uniform
    # sparsity (the same share of every conv), or a global target: target_metric (macs | params | kmodel_bytes |
    # latency, the compiler's cycle-model estimate) reduced by target_reduction, allocated over the convs by
    # allocation (uniform | global_gamma: one threshold on the scores | sensitivity: from the per-layer curves of
    # `invoke prune --sensitivity`); every conv keeps at least min_filters (the KPU needs 4), rounded up to a multiple
    # of round_to (4: the KPU shares a RAM line between 4 channels of maps up to 16 px wide); rounds: prune + fine-tune
    # rounds toward the target; finetune_epochs per round at finetune_lr_scale x train.learning_rate; distill > 0:
    # fine-tuning also matches the unpruned model's head outputs, with that weight
    "prune": {"sparsity": 0.0, "finetune_epochs": 5, "finetune_lr_scale": 0.1, "min_filters": 4,
              "criterion": "gamma", "allocation": "uniform", "target_metric": "macs", "target_reduction": 0.0,
              "round_to": 4, "rounds": 1, "distill": 0.0},
    # quantize: calib_images training images calibrate the uint8 model; method picks the per-tensor activation
    # ranges: tflite (the converter's own min/max), or the project's from the float model's calibration histograms,
    # written into the uint8 TFLite (and so into the kmodel): minmax, percentile (each tail clipped to
    # 100 - percentile %), mse (least squared error between float and fake-quantized values), kl (TensorRT's
    # entropy calibration, asymmetric); cle: fold batch norm and equalise consecutive conv pairs' weight ranges
    # (cross-layer equalisation with bias absorption, deploy/quantize/cle.py) before converting; qat_epochs > 0:
    # then quantization-aware training from those ranges for that many epochs at qat_learning_rate (fake-quantised
    # per-channel weights, learned activation clips, BN folded; deploy/quantize/qat.py). A detector fine-tunes on its
    # training loss; a recognizer on qat_loss: distill (1 - cosine to the float model's embedding of the same crop)
    # or rcm (the rotation-consistent margin on the CosFace / ArcFace loss over the training identities, plus
    # qat_distill_weight x distill; models/recognizer/rcm.py)
    "quantize": {"calib_images": 200, "method": "tflite", "percentile": 99.99, "cle": False, "qat_epochs": 0,
                 "qat_learning_rate": 0.0001, "qat_loss": "distill", "qat_distill_weight": 50.0},
    "export": {"held_images": 8},
    # kmodel_engine: how `invoke eval` runs the kmodel, fast (the C runtime, 15-30x quicker, the same bytes) or
    # reference (the NumPy simulator that defines them)
    "eval": {"kmodel_engine": "fast"},
    # fuse_leaky: fold LeakyReLU into the conv's KPU activation table (one layer, not bit-exact to LiteRT)
    "compile": {"budget_mib": 5.5, "fuse_leaky": False},
    "deploy": {"board": "sim", "port": None, "kmodel_address": 0x300000, "score_threshold": 0.5, "nms_iou": 0.3,
               # flashing: reset sequence (auto | dan | bit | trainer | kd233 | goE | maixduino | bit_mic | goD |
               # generic), flash-stage baud rate, flash-stage program file (None -> the installed kflash package)
               # and its dialect (None -> identified by SHA-256; vowstar | sipeed | ktool)
               "board_type": "auto", "baud": 1500000, "isp_prog": None, "stub_dialect": None},
    # firmware: rendered RT-Thread glue; name None -> the config's name; kmodel_storage embedded | flash (at
    # deploy.kmodel_address); rounding reference | v0.1 (soft-KPU activation rounding, compile-time switch);
    # kpu_kernel fast | reference (the soft KPU's convolution kernel: firmware/runtime/kpu_soft.c or the plain
    # loops of kpu_ref.c, the same bytes)
    # camera: the k210 board's sensor (ov5640 | ov2640); rt_ai: the model runtime the RT-Thread builds use, ours
    # (face_ai/rt_ai) | rtak (RT-AK's rt_ai_lib: the BSP's own, else rtak_lib, else $RTAK_LIB, else ../shared)
    "firmware": {"name": None, "kmodel_storage": "flash", "max_candidates": 256, "camera": "ov5640",
                 "rounding": "reference", "kpu_kernel": "fast", "run_timeout_s": 300, "rt_ai": "ours",
                 "rtak_lib": None},
}


# The type, range and units of every key above: the config file, `--set` and task flags are all checked by these
# (pipeline.values.Rule). Names whose list lives with the code that uses them (model.family, dataset.format,
# deploy.board, deploy.board_type, firmware.rounding, ...) are checked there and only typed here.
NAME = Rule("str")
PATH = Rule("str", nullable=True)
RULES: dict[str, Rule] = {
    "dataset.format": NAME, "dataset.train": PATH, "dataset.val": PATH, "dataset.classes": Rule("names"),
    "dataset.class_map": Rule("map"), "dataset.classes_file": PATH, "dataset.images_root": PATH,
    "dataset.paths_outside_root": Rule("bool"),
    "dataset.synthetic.train_count": count(1, "images"), "dataset.synthetic.val_count": count(1, "images"),
    "dataset.synthetic.size": Rule("size", length=2, low=32, unit="width, height in pixels"),
    "dataset.synthetic.seed": count(0),
    "model.family": NAME, "model.width": number(0, 4, open_low=True, unit="width multiplier"),
    "model.input_size": Rule("size", length=2, low=8, unit="width, height in pixels"),
    "model.anchors": Rule("pairs", nullable=True), "model.num_anchors": count(1),
    "model.activation": NAME, "model.passthrough_filters": count(0, nullable=True),
    "model.output_stride": Rule("int", choices=(16, 32)), "model.min_channels": count(4, "filters"),
    "model.task": Rule("str", choices=("detector", "recognizer", "attendance")),
    "recognizer.embedding_size": count(4, "values"), "recognizer.head_channels": count(4, "channels"),
    "recognizer.crop_margin": number(0, 2, unit="box sides on each side"), "recognizer.loss": NAME,
    "recognizer.scale": positive(), "recognizer.margin": number(0, unit="cosine or radians"),
    "recognizer.distill": NAME, "recognizer.distill_weight": number(0), "recognizer.extra_train": Rule("strings"),
    "recognizer.class_weight": number(0), "recognizer.unlabelled": Rule("strings"),
    "recognizer.unlabelled_min_side": count(4, "pixels"),
    "recognizer.val_identities": count(2, "identities"), "recognizer.stranger_identities": count(0, "identities"),
    "recognizer.held_out_identities": Rule("strings"), "recognizer.min_images": count(2, "images"),
    "recognizer.gray_prob": fraction("probability"), "recognizer.lfw": PATH,
    "recognizer.eval_pairs_per_fold": count(0, "pairs, 0 = all"), "recognizer.classroom": PATH,
    "recognizer.eval_strangers": count(0, "images, 0 = all"),
    "train.epochs": count(1), "train.batch_size": count(1, "images"), "train.learning_rate": positive(),
    "train.warmup_epochs": count(0), "train.patience": count(1, "epochs"), "train.seed": count(0),
    "train.budget_mib": positive("MiB"), "train.weight_decay": number(0), "train.ignore_thresh": fraction("IoU"),
    "train.rescore": Rule("bool"), "train.augment": Rule("bool"), "train.max_boxes": count(1, "boxes per image"),
    "train.loss_weights.coord": number(0), "train.loss_weights.obj": number(0),
    "train.loss_weights.noobj": number(0), "train.loss_weights.class": number(0),
    "train.time_limit_minutes": number(0, unit="minutes, 0 = no limit"), "train.quiet": Rule("bool"),
    "train.bn_l1": number(0, 10, unit="L1 weight on BN gammas"),
    "train.distribute": Rule("str", choices=("none", "mirrored", "multi_worker")),
    "train.devices": Rule("strings"), "train.lr_scaling": Rule("str", choices=("none", "linear")),
    "attendance.detector": PATH, "attendance.recognizer": PATH, "attendance.people": PATH,
    "attendance.session": PATH, "attendance.strangers": count(0, "photos"),
    "attendance.max_faces": count(1, "faces per frame"), "attendance.enroll_frames": count(1, "frames"),
    "attendance.threshold": fraction("cosine similarity"), "attendance.capacity": count(1, "people"),
    "attendance.detector_address": count(0, "flash byte address"),
    "attendance.recognizer_address": count(0, "flash byte address"),
    "attendance.db_address": count(0, "flash byte address"), "attendance.test_hooks": Rule("bool"),
    "attendance.tune_impostors": count(0, "photos, 0 = use attendance.threshold"),
    "attendance.target_rejection": fraction("share of impostor photos"),
    "prune.sparsity": number(0, 1, open_high=True, unit="fraction of filters"), "prune.finetune_epochs": count(0),
    "prune.finetune_lr_scale": positive(), "prune.min_filters": count(1, "filters"),
    "prune.criterion": Rule("str", choices=("gamma", "l1")),
    "prune.allocation": Rule("str", choices=("uniform", "global_gamma", "sensitivity")),
    "prune.target_metric": Rule("str", choices=("macs", "params", "kmodel_bytes", "latency")),
    "prune.target_reduction": number(0, 1, open_high=True, unit="fraction of prune.target_metric"),
    "prune.round_to": count(1, "channels"), "prune.rounds": count(1), "prune.distill": number(0, unit="weight"),
    "quantize.calib_images": count(1, "images"),
    "quantize.method": Rule("str", choices=("tflite", "minmax", "percentile", "mse", "kl")),
    "quantize.percentile": number(0, 100, open_low=True, unit="percent of the values inside the range, per tail"),
    "quantize.cle": Rule("bool"), "quantize.qat_epochs": count(0, "epochs"),
    "quantize.qat_learning_rate": positive(), "quantize.qat_loss": Rule("str", choices=("distill", "rcm")),
    "quantize.qat_distill_weight": number(0, unit="weight"),
    "export.held_images": count(0, "images"),
    "eval.kmodel_engine": Rule("str", choices=("fast", "reference")),
    "compile.budget_mib": positive("MiB"), "compile.fuse_leaky": Rule("bool"),
    "deploy.board": NAME, "deploy.port": PATH, "deploy.kmodel_address": count(0, "flash byte address"),
    "deploy.score_threshold": fraction("score"), "deploy.nms_iou": fraction("IoU"), "deploy.board_type": NAME,
    "deploy.baud": count(1, "baud"), "deploy.isp_prog": PATH, "deploy.stub_dialect": PATH,
    "firmware.name": PATH, "firmware.kmodel_storage": NAME, "firmware.max_candidates": count(1),
    "firmware.camera": NAME, "firmware.rounding": NAME, "firmware.kpu_kernel": NAME,
    "firmware.run_timeout_s": positive("seconds"),
    "firmware.rt_ai": Rule("str", choices=("ours", "rtak")), "firmware.rtak_lib": PATH,
}


def rule_for(dotted: str) -> Rule:
    """The rule of a config key; a key without one (added later) is checked against its default's type."""
    if dotted in RULES:
        return RULES[dotted]
    node: Any = DEFAULTS
    for part in dotted.split("."):
        node = node[part]
    kind = {bool: "bool", int: "int", float: "float", str: "str"}.get(type(node), "any")
    return Rule(kind, nullable=node is None)


def _is_leaf(dotted: str) -> bool:
    node: Any = DEFAULTS
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return not (isinstance(node, dict) and node)


def parse_setting(dotted: str, value: Any) -> Any:
    """A value given on the command line (flag text or a `--set` YAML value) for config key `dotted`, parsed and
    checked by its rule; unknown keys are left to the config merge, which names them."""
    return rule_for(dotted).parse(value, field=dotted, path="command line") if _is_leaf(dotted) else value


def build_root() -> Path:
    """build/, or $PIPELINE_BUILD_ROOT when set (tests use a temp folder)."""
    return Path(os.environ.get("PIPELINE_BUILD_ROOT", REPO_ROOT / "build"))


@dataclass(frozen=True)
class Config:
    """A loaded pipeline config: its values, the file it came from and where its artifacts go."""

    name: str
    path: Path
    values: dict[str, Any]

    @property
    def build_dir(self) -> Path:
        """build/<config>/, under $PIPELINE_BUILD_ROOT when set (tests use a temp folder)."""
        return build_root() / self.name

    def get(self, dotted: str) -> Any:
        node: Any = self.values
        for part in dotted.split("."):
            node = node[part]
        return node

    def with_values(self, overrides: dict[str, Any]) -> Config:
        """A copy with dotted-key values replaced (None leaves a value as it is)."""
        values = copy.deepcopy(self.values)
        for key, value in overrides.items():
            if value is None:
                continue
            node = values
            *parents, last = key.split(".")
            for part in parents:
                node = node[part]
            if last not in node:
                raise PipelineError("unknown key", path=self.path, field=key)
            node[last] = rule_for(key).check(value, field=key, path=self.path) if _is_leaf(key) else value
        return Config(self.name, self.path, values)

    def resolve_path(self, value: str | None) -> Path | None:
        """A path from the config, relative to the config file's folder unless absolute."""
        if value is None:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.path.parent / path).resolve()


def _merge(defaults: dict[str, Any], given: dict[str, Any], path: Path, prefix: str) -> dict[str, Any]:
    merged = copy.deepcopy(defaults)
    for key, value in given.items():
        dotted = f"{prefix}{key}"
        if key not in defaults:
            known = ", ".join(sorted(defaults))
            raise PipelineError("unknown key", path=path, field=dotted, expected=f"one of: {known}")
        default = defaults[key]
        if isinstance(default, dict) and default and not isinstance(value, dict):
            raise PipelineError(f"got {type(value).__name__}", path=path, field=dotted, expected="a mapping")
        if isinstance(default, dict) and default:
            merged[key] = _merge(default, value, path, dotted + ".")
        else:
            merged[key] = _checked(default, value, path, dotted)
    return merged


def _checked(default: Any, value: Any, path: Path, dotted: str) -> Any:
    if dotted in RULES or default is not None:
        return rule_for(dotted).check(value, field=dotted, path=path)
    return value


def parse_override(text: str) -> tuple[str, Any]:
    """Parse `key.sub=value` (value read as YAML) as given to `--set`."""
    if "=" not in text:
        raise PipelineError(f"override {text!r} has no '='", field="--set", expected="key.sub=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not raw.strip():
        raise PipelineError(f"override {text!r} has no value", field=key, expected="key.sub=value")
    return key, yaml_value(raw, field=key)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load a config file, fill defaults, apply dotted-key overrides (flags), and check every field."""
    path = Path(path) if path else DEFAULT_CONFIG
    if not path.is_absolute() and not path.exists():
        path = REPO_ROOT / path
    if not path.is_file():
        raise PipelineError("config file not found", path=path, expected="a YAML file such as configs/demo.yaml")
    try:
        given = yaml.safe_load(read_utf8(path)) or {}
    except yaml.YAMLError as exc:
        raise PipelineError(f"not valid YAML: {exc}", path=path) from exc
    if not isinstance(given, dict):
        raise PipelineError("top level is not a mapping", path=path, expected="keys such as dataset, model")
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        value = parse_setting(key, value)
        node = given
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise PipelineError("cannot override inside a non-mapping", path=path, field=key)
        node[parts[-1]] = value
    values = _merge(DEFAULTS, given, path, "")
    return Config(name=path.stem, path=path.resolve(), values=values)
