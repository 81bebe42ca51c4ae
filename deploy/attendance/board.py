"""The attendance system on a board, as `invoke build`, `invoke flash` and `invoke attendance` run it: every stage
in order (each skipped when unchanged), one kfpkg with the firmware, the kmodels kept in flash and the enrolled
database, and on the simulated board a session that prints the accuracy against the ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy.attendance.people import session_photos, stranger_photos
from deploy.attendance.session import database_path, enroll_stage, run_session, write_session
from deploy.attendance.stages import (
    ROLES,
    attendance_models,
    build_attendance_stage,
    built,
    model_files,
    prepare_models,
)
from deploy.firmware.boards import board_spec, flashed_board
from pipeline.config import Config
from pipeline.errors import PipelineError

KFPKG_NAME = "attendance.kfpkg"


def build_attendance(cfg: Config, board: str, *, rtt_root: str | None = None, force: bool = False) -> dict[str, Any]:
    """train/export/compile both models -> render -> build for `board` -> enroll on the host."""
    models = attendance_models(cfg)
    if board_spec(board).build_target != "host":
        from deploy.end_to_end import preflight_rtthread

        preflight_rtthread(board, rtt_root)
    prepare_models(models, force=force)
    metrics = build_attendance_stage(models, board, rtt_root=rtt_root, force=force).metrics
    enrolled = enroll_stage(models, force=force).metrics
    return {**metrics, "enrolled": enrolled}


def attendance_kfpkg(cfg: Config, board: str) -> Path:
    """build/<config>/attendance.kfpkg: the firmware at 0, the kmodels the board keeps in flash and the database."""
    from deploy.isp.kfpkg import FlashEntry, write_kfpkg

    models = attendance_models(cfg)
    metrics = built(cfg, flashed_board(board).build_target)
    if "image" not in metrics:
        raise PipelineError(f"the {board} build has no firmware image", field="--board",
                            expected=f"run `invoke build --board {board}` first")
    entries = [FlashEntry("firmware.bin", 0, Path(metrics["image"]).read_bytes(), True),
               FlashEntry("face_db.bin", cfg.attendance.db_address, database_path(models).read_bytes(), False)]
    if board_spec(board).kmodel_storage == "flash":
        entries += [FlashEntry(f"{role}.kmodel", models.address(role), model_files(models.of(role))[0].read_bytes(),
                               False) for role in ROLES]
    out = cfg.build_dir / KFPKG_NAME
    write_kfpkg(out, sorted(entries, key=lambda e: e.address))
    return out


def session(cfg: Config, board: str, images: Path | None = None, *, count_instructions: bool = False
            ) -> dict[str, Any]:
    """Recognize a session's photos on the board (plus the recognizer's strangers when no folder is given);
    writes attendance.csv, contact_sheet.png and session.json in build/<config>/attendance/."""
    models = attendance_models(cfg)
    photos = session_photos(cfg, images)
    if images is None:
        photos += stranger_photos(models.recognizer, cfg.attendance.strangers)
    checks, threshold = run_session(models, board, photos, count_instructions=count_instructions)
    return write_session(models, checks, board, threshold)
