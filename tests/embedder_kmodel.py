"""A random-weight recognizer kmodel for the firmware tests: the w0.125 MobileFaceNet of test_k210_recognizer,
exported and compiled here (no training), with the compile report `invoke compile` would write beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deploy.k210.compiler.compile_report import build_report
from deploy.k210.compiler.driver import compile_tflite
from models.recognizer.crop import CropPolicy
from tests.test_k210_recognizer import EMBEDDING, embedder_tflite

SIDE = 112
MARGIN_PERMILLE = CropPolicy(SIDE).margin_permille


def embedder_meta(side: int = SIDE) -> dict[str, Any]:
    """The model_meta.json fields of a recognizer that the firmware reads."""
    return {"task": "recognizer", "family": "mobilefacenet", "width": 0.125, "input_size": [side, side],
            "embedding_size": EMBEDDING, "crop_margin_permille": MARGIN_PERMILLE}


def embedder_kmodel(folder: Path, side: int = SIDE) -> tuple[Path, dict[str, Any]]:
    """folder/model.kmodel and folder/compile_report.json of a random-weight embedder; returns the path and report."""
    folder.mkdir(parents=True, exist_ok=True)
    compiled = compile_tflite(embedder_tflite("mobilefacenet", side))
    report = build_report(compiled, source=folder / "model_uint8.tflite", budget_mib=1.0, meta=embedder_meta(side))
    kmodel = folder / "model.kmodel"
    kmodel.write_bytes(compiled.data)
    (folder / "compile_report.json").write_text(json.dumps(report))
    return kmodel, report
