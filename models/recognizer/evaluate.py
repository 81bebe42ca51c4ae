"""`invoke eval` on a recognizer: the LFW View 2 protocol on the dev folds and classroom identification (enroll 1, 3
and 5 photos per student, open-set against held-out strangers), for each runtime it is given (Keras here; float and
uint8 TFLite and the kmodel in the KPU simulator come from deploy/, which passes them in), with the dlib teacher as
the anchor on the same pairs -> build/<config>/eval.json + ROC PNG. Every runtime sees the crops of the one crop
policy (models/recognizer/crop.py, whose C twin the firmware runs)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.data.classmap import ClassMap
from models.data.problems import ProblemLog
from models.data.voc import read_voc
from models.recognizer.augment import eval_images
from models.recognizer.centre import CENTRE_NAME, embedding_centre, flip_average, normalised, policy_embed
from models.recognizer.embedder import load_embedder
from models.recognizer.face_boxes import LFW_FACE_BOX
from models.recognizer.faces import FaceItem, crop_faces
from models.recognizer.identification import enroll_templates, identification_metrics
from models.recognizer.lfw_pairs import LfwPairs, read_lfw_pairs
from models.recognizer.settings import RecognizerSettings, teacher_cache
from models.recognizer.verification import plot_roc, verification_metrics
from pipeline.atomic import write_json
from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.text_files import read_utf8

EVAL_NAME, ROC_NAME = "eval.json", "lfw_roc.png"
ENROLL_COUNTS = (1, 3, 5)
Embed = Callable[[np.ndarray], np.ndarray]  # float crops (N, S, S, 3) in [0, 1] -> embeddings (N, D)
CROP_PREPROCESSING = "face crop policy (models/recognizer/crop.py = firmware/app/face_crop.c), every runtime"


def centred(embed: Embed, centre: np.ndarray | None) -> Embed:
    """A runtime's embed function with the model's embedding centre applied (unchanged without one)."""
    return embed if centre is None else lambda images: normalised(embed(images), centre)


def keras_embed(model) -> Embed:
    return lambda images: np.concatenate([np.asarray(model(images[i:i + 64], training=False))
                                          for i in range(0, len(images), 64)])


@dataclass(frozen=True)
class LfwSet:
    pairs: LfwPairs
    crops: np.ndarray  # uint8 policy crops of pairs.images
    used: np.ndarray  # the pairs evaluated (all, or the first N per fold)


def lfw_set(settings: RecognizerSettings, root: Path, pairs_per_fold: int) -> LfwSet:
    """LFW dev pairs, each image cut by the crop policy around the fixed LFW face box."""
    pairs = read_lfw_pairs(root / "pairs_dev.txt", root / "images")
    used = np.ones(len(pairs.same), bool)
    if pairs_per_fold:  # the first half of the limit from the matched pairs, the rest from the mismatched ones
        used = np.zeros(len(pairs.same), bool)
        for fold in np.unique(pairs.fold):
            for same in (True, False):
                index = np.flatnonzero((pairs.fold == fold) & (pairs.same == same))
                used[index[:pairs_per_fold // 2 if same else pairs_per_fold - pairs_per_fold // 2]] = True
    needed = np.unique(np.concatenate([pairs.a[used], pairs.b[used]]))
    items = [FaceItem(pairs.images[i], None, LFW_FACE_BOX) for i in needed]
    log = ProblemLog(strict=True)  # the protocol needs every pair
    crops, _ = crop_faces(items, settings.policy, log, "LFW crops")
    full = np.zeros((len(pairs.images), *crops.shape[1:]), np.uint8)
    full[needed] = crops
    return LfwSet(pairs, full, used)


def lfw_metrics(embeddings: np.ndarray, data: LfwSet) -> tuple[dict[str, Any], np.ndarray]:
    """Verification metrics of one runtime's (N, D) embeddings of data.pairs.images, and the pair similarities."""
    emb = normalised(embeddings)
    p, used = data.pairs, data.used
    similarity = np.sum(emb[p.a[used]] * emb[p.b[used]], axis=1)
    return verification_metrics(similarity, p.same[used], p.fold[used]), similarity


def teacher_lfw(cfg: Config, data: LfwSet) -> np.ndarray:
    """The dlib teacher's embeddings of the LFW images (from the shared cache after the first run)."""
    from models.recognizer.teacher import teacher_embeddings

    needed = np.unique(np.concatenate([data.pairs.a[data.used], data.pairs.b[data.used]]))
    out = np.zeros((len(data.pairs.images), 128), np.float32)
    out[needed] = teacher_embeddings([(data.pairs.images[i], LFW_FACE_BOX) for i in needed], teacher_cache(cfg))
    return out


@dataclass(frozen=True)
class ClassroomSet:
    enrolled: dict[int, tuple[np.ndarray, list[str]]]  # photos per student -> (crops, names)
    probes: np.ndarray
    probe_names: list[str]
    strangers: np.ndarray


def classroom_set(settings: RecognizerSettings, root: Path, stranger_items: list[FaceItem]) -> ClassroomSet:
    """Students' train photos to enroll from (the first 1, 3, 5 of each, sorted by file), their val photos as probes
    and the held-out strangers' crops; faces cut around their annotated boxes."""
    text = read_utf8(root / "classes.txt", expected="one student name per line")
    names = [line.strip() for line in text.splitlines() if line.strip()]
    classes, log = ClassMap(names), ProblemLog()

    def faces(split: str) -> list[FaceItem]:
        return [FaceItem(r.image_path, names[int(r.labels[0])], tuple(float(v) for v in r.boxes[0]))
                for r in read_voc(root / split, classes, log) if len(r.labels)]

    train, val = faces("train"), faces("val")
    enrolled = {}
    for count in ENROLL_COUNTS:
        chosen = [item for name in names for item in [i for i in train if i.identity == name][:count]]
        crops, kept = crop_faces(chosen, settings.policy, log, f"enroll {count}")
        enrolled[count] = (crops, [item.identity for item in kept])
    probes, kept = crop_faces(val, settings.policy, log, "classroom probes")
    strangers, _ = crop_faces(stranger_items, settings.policy, log, "strangers")
    return ClassroomSet(enrolled, probes, [item.identity for item in kept], strangers)


def identification(embed: Embed, data: ClassroomSet) -> dict[str, Any]:
    probes, strangers = embed(eval_images(data.probes)), embed(eval_images(data.strangers))
    out = {}
    for count, (crops, names) in data.enrolled.items():
        labels, templates = enroll_templates(embed(eval_images(crops)), names)
        out[f"enroll_{count}"] = identification_metrics(templates, labels, probes, data.probe_names, strangers)
    return out


def keras_embedder(path: Path) -> tuple[Path, Callable[[Path], Embed]]:
    """The Keras embedder in `path` as a runtime: (its file, how to make its embed function)."""
    return path, lambda p: keras_embed(load_embedder(p))


def evaluate_recognizer(cfg: Config, runtimes: dict[str, tuple[Path, Callable[[Path], Embed]]],
                        teacher: bool = True) -> dict[str, Any]:
    """LFW and classroom metrics of every runtime (name -> its model file, how to make its embed function from
    that file) whose file exists, and of the teacher -> eval.json + lfw_roc.png. Every runtime's embeddings follow
    the config's flip policy and are centred by its embedding centre (models/recognizer/centre.py) when it has one;
    the teacher's are neither (the anchor stays dlib's own single-crop embedding)."""
    settings = RecognizerSettings.from_config(cfg)
    centre, flip = embedding_centre(cfg), flip_average(cfg)
    rec = cfg.recognizer
    lfw_root = cfg.resolve_path(rec.lfw)
    if lfw_root is None:
        raise PipelineError("no LFW folder", path=cfg.path, field="recognizer.lfw",
                            expected="the folder with pairs_dev.txt and images/ (../shared/data/lfw)")
    lfw = lfw_set(settings, lfw_root, rec.eval_pairs_per_fold)
    classroom_root = cfg.resolve_path(rec.classroom)
    classroom = None
    if classroom_root is not None:
        strangers = settings.identity_split(ProblemLog()).strangers
        classroom = classroom_set(settings, classroom_root, strangers[:rec.eval_strangers or None])
    report: dict[str, Any] = {"lfw": {"pairs": int(lfw.used.sum()), "box": list(LFW_FACE_BOX)},
                              "classroom": {"boxes": "annotated", "students": len(set(classroom.probe_names)),
                                            "probes": len(classroom.probes), "strangers": len(classroom.strangers)}
                              if classroom else None, "preprocessing": CROP_PREPROCESSING,
                              "centre": None if centre is None else str(cfg.build_dir / CENTRE_NAME),
                              "flip_average": flip, "runtimes": {}}
    curves = {}
    for name, (path, make) in runtimes.items():
        if not path.is_file():
            report["runtimes"][name] = {"missing": str(path), "hint": "run `invoke train` / `export` / `compile`"}
            continue
        embed = centred(policy_embed(make(path), flip), centre)
        metrics, similarity = lfw_metrics(embed(eval_images(lfw.crops)), lfw)
        curves[name] = (similarity, lfw.pairs.same[lfw.used])
        report["runtimes"][name] = {"model": str(path), "lfw": metrics,
                                    "classroom": identification(embed, classroom) if classroom else None}
    if not curves:
        raise PipelineError("no model to evaluate", path=cfg.build_dir, expected="model.keras (run `invoke train`)")
    if teacher:
        metrics, similarity = lfw_metrics(teacher_lfw(cfg, lfw), lfw)
        curves["teacher (dlib)"] = (similarity, lfw.pairs.same[lfw.used])
        report["teacher"] = {"model": "dlib_face_recognition_resnet_model_v1", "lfw": metrics}
    plot_roc(curves, cfg.build_dir / ROC_NAME)
    write_json(cfg.build_dir / EVAL_NAME, report)
    return report


def format_recognizer_eval(report: dict[str, Any]) -> str:
    centre = f", embeddings centred by {report['centre']}" if report.get("centre") else ""
    flip = ", each crop's embedding averaged with its mirror image's" if report.get("flip_average") else ""
    lines = [f"LFW dev, {report['lfw']['pairs']} pairs (View 2, threshold per fold from the others){centre}{flip}:"]
    rows = dict(report["runtimes"])
    if "teacher" in report:
        rows["teacher"] = report["teacher"]
    for name, entry in rows.items():
        if "lfw" not in entry:
            lines.append(f"  {name:8s} missing ({entry['missing']})")
            continue
        lfw = entry["lfw"]
        tar = ", ".join(f"TAR@FAR {t['far']:g} {t['tar']:.3f}" for t in lfw["tar_at_far"])
        line = f"  {name:8s} accuracy {lfw['accuracy_mean']:.4f} +- {lfw['accuracy_std']:.4f}, AUC " \
               f"{lfw['roc_auc']:.4f}, {tar}"
        for count, ident in (entry.get("classroom") or {}).items():
            line += f"\n           classroom {count}: top-1 {ident['top1_accuracy']:.3f}, TPIR@FPIR 1% " \
                    f"{ident['tpir']:.3f}"
        lines.append(line)
    return "\n".join(lines)

