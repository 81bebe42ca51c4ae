"""Enrollment on the host and a session on the board: the students' templates computed as the firmware's
face_enroll computes them (written as the database image that `flash` writes), then a session's photos named by
the firmware, checked frame by frame against the Python twin, and written as attendance.csv + a contact sheet."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploy.attendance.matching import UNKNOWN, decide
from deploy.attendance.people import Photo, enrollment_photos
from deploy.attendance.recognize import Face, FaceReader, largest
from deploy.attendance.stages import (
    DB_NAME,
    ROLES,
    AttendanceModels,
    built,
    compile_report,
    model_files,
    model_specs,
)
from deploy.firmware.camera_frames import read_frame
from deploy.k210.compiler.cycles import calibration_note
from pipeline.atomic import atomic_path, write_json, write_text
from pipeline.errors import PipelineError
from pipeline.progress import progress
from pipeline.stage import StageResult, run_stage

CROP_TOLERANCE_PX = 1  # C and NumPy decode boxes to within 2e-3 px: a rounding may land one pixel apart
SIMILARITY_TOLERANCE = 2e-3


def face_reader(models: AttendanceModels) -> FaceReader:
    """The Python twin on the engine `eval.kmodel_engine` names (fast: the C runtime; reference: NumPy)."""
    from deploy.attendance.recognize import RUNNERS

    specs = model_specs(models)
    engine, rounding = RUNNERS[models.cfg.eval.kmodel_engine], models.cfg.firmware.rounding
    return FaceReader(specs["detector"], specs["recognizer"], models.cfg.attendance.max_faces,
                      runner=lambda kmodel: engine(kmodel, rounding))


def database_path(models: AttendanceModels) -> Path:
    return models.cfg.build_dir / "attendance" / DB_NAME


def enroll_stage(models: AttendanceModels, *, people: Path | None = None, force: bool = False) -> StageResult:
    """Enroll every person from their photos (the largest face of each, as face_enroll takes it) into
    build/<config>/attendance/face_db.bin, the database region as the flash holds it."""
    from deploy.attendance.face_db import FaceDatabase, FaceRecord, check_name, region_image, template_units

    cfg = models.cfg
    att = cfg.attendance
    photos = enrollment_photos(cfg, people)
    for name in photos:
        check_name(name)
    if len(photos) > att.capacity:
        raise PipelineError(f"{len(photos)} people", field="attendance.capacity", expected=">= the people enrolled")
    out = database_path(models)

    def work() -> dict[str, Any]:
        reader = face_reader(models)
        records, without_face, no_template = [], 0, []
        for name in progress(sorted(photos), desc="enroll", unit="person"):
            units = []
            for path in photos[name]:
                face = largest(reader.faces(read_frame(path)))
                if face is None:
                    without_face += 1
                else:
                    units.append(face.units)
            if units:
                records.append(FaceRecord(name, len(units), template_units(np.stack(units))))
            else:
                no_template.append(name)
        threshold, tuning = round(att.threshold * 10000), None
        if att.tune_impostors > 0 and records:
            tuning = tune_threshold(reader, records, models, att.tune_impostors, att.target_rejection)
            threshold = tuning["threshold_permyriad"]
        db = FaceDatabase(embedding_size=reader.recognizer.embedder.embedding_size, capacity=att.capacity,
                          threshold_permyriad=threshold, sequence=1, records=tuple(records))
        with atomic_path(out) as tmp:
            tmp.write_bytes(region_image(db))
        return {"db": str(out), "people": len(records), "photos": sum(r.photos for r in records),
                "photos_without_face": without_face, "people_without_face": no_template,
                "threshold": threshold / 10000, "tuning": tuning, "address": att.db_address}

    inputs = [p for role in ROLES for p in model_files(models.of(role))] + [p for ps in photos.values() for p in ps]
    return run_stage(cfg.build_dir, "enroll", inputs=inputs, params={"attendance": cfg.values["attendance"],
                                                                           "deploy": cfg.values["deploy"]},
                     outputs=[out], work=work, force=force)


def rejecting_threshold(similarities: list[float], target: float) -> int:
    """The lowest threshold in 1e-4 (a face is named at similarity * 10000 >= it) below which at least `target` of
    the similarities fall."""
    ordered = sorted(similarities)
    keep = max(0, min(len(ordered) - 1, int(np.ceil(target * len(ordered))) - 1))  # ordered[:keep + 1] fall below
    return min(10000, int(np.floor(ordered[keep] * 10000)) + 1)


def tune_threshold(reader: FaceReader, records: list, models: AttendanceModels, impostors: int,
                   target: float) -> dict[str, Any]:
    """The lowest threshold (in 1e-4) that rejects `target` of the impostor photos (the recognizer's held-back
    identities: their best similarity to any enrolled template must stay below it)."""
    from deploy.attendance.people import stranger_photos

    names, templates = [r.name for r in records], [r.template for r in records]
    best = []
    for photo in progress(stranger_photos(models.recognizer, impostors, held_back=True), desc="tune", unit="photo"):
        face = largest(reader.faces(read_frame(photo.path)))
        if face is not None:
            best.append(decide(face.units, names, templates, 0).similarity)
    if not best:
        raise PipelineError("no face found in any impostor photo", field="attendance.tune_impostors",
                            expected="photos in which the detector finds a face")
    threshold = rejecting_threshold(best, target)
    return {"threshold_permyriad": threshold, "impostor_photos": len(best), "target_rejection": target,
            "rejected": round(sum(s * 10000 < threshold for s in best) / len(best), 4)}


@dataclass(frozen=True)
class FrameCheck:
    """One frame: what the firmware printed and what the Python twin decides on the same bytes."""

    photo: Photo
    printed: list[dict]
    expected: list[tuple[Face, str, float, str | None]]  # face, name, similarity, most similar enrolled person
    instructions: int | None = None  # QEMU -icount: instructions the frame took on the emulated CPU

    @property
    def agrees(self) -> bool:
        if len(self.printed) != len(self.expected):
            return False
        for got, (face, name, sim, _) in zip(self.printed, self.expected, strict=True):
            if got["name"] != name or abs(got["similarity"] - sim) > SIMILARITY_TOLERANCE:
                return False
            if max(abs(a - b) for a, b in zip(got["crop"], face.crop, strict=True)) > CROP_TOLERANCE_PX:
                return False
        return True

    def _largest(self) -> int:
        areas = [(f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]) for f in self.printed]
        return int(np.argmax(areas))

    @property
    def named(self) -> str:
        """Who the frame shows, by its largest face: a name, UNKNOWN, or '' (no face)."""
        return self.printed[self._largest()]["name"] if self.printed else ""

    @property
    def closest(self) -> str:
        """The enrolled person most similar to the largest face, whatever the threshold ('' without a face)."""
        if not self.printed or len(self.expected) != len(self.printed):
            return ""
        return self.expected[self._largest()][3] or ""


def python_decisions(reader: FaceReader, photo: Photo, names: list[str], templates: list[np.ndarray],
                     threshold_permyriad: int) -> list[tuple[Face, str, float, str | None]]:
    out = []
    for face in reader.faces(read_frame(photo.path)):
        decision = decide(face.units, names, templates, threshold_permyriad)
        out.append((face, decision.name, decision.similarity, decision.best))
    return out


def session_report(checks: list[FrameCheck], threshold: float) -> dict[str, Any]:
    """threshold: the similarity the board's database holds."""
    """Agreement with the Python twin, and accuracy where the truth is known: top-1 on photos of enrolled people
    (their largest face), rejection of strangers (no face named)."""
    known = [c for c in checks if c.photo.person is not None]
    strangers = [c for c in checks if c.photo.stranger]
    detected_strangers = [c for c in strangers if c.printed]
    report: dict[str, Any] = {
        "frames": len(checks), "agree_with_python": sum(c.agrees for c in checks), "threshold": threshold,
        "faces": sum(len(c.printed) for c in checks),
    }
    if known:
        report["enrolled_photos"] = len(known)
        report["top1"] = round(sum(c.named == c.photo.person for c in known) / len(known), 4)
        report["closed_set_top1"] = round(sum(c.closest == c.photo.person for c in known) / len(known), 4)
        report["no_face"] = sum(not c.printed for c in known)
    if strangers:
        report["stranger_photos"] = len(strangers)
        report["strangers_with_a_face"] = len(detected_strangers)
        rejected = sum(all(f["name"] == UNKNOWN for f in c.printed) for c in detected_strangers)
        report["stranger_rejection"] = round(rejected / len(detected_strangers), 4) if detected_strangers else None
    ms = [f for c in checks for f in c.printed]
    report["faces_named"] = sum(f["name"] != UNKNOWN for f in ms)
    return report


def attendance_rows(checks: list[FrameCheck]) -> list[dict[str, Any]]:
    """name, frames seen, best similarity, first frame: one row per person the firmware named."""
    rows: dict[str, dict[str, Any]] = {}
    for index, check in enumerate(checks):
        for name in {f["name"] for f in check.printed if f["name"] != UNKNOWN}:
            best = max(f["similarity"] for f in check.printed if f["name"] == name)
            row = rows.setdefault(name, {"name": name, "frames_seen": 0, "best_similarity": 0.0,
                                         "first_frame": index})
            row["frames_seen"] += 1
            row["best_similarity"] = max(row["best_similarity"], best)
    return sorted(rows.values(), key=lambda r: r["name"])


def write_attendance_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["name", "frames_seen", "best_similarity", "first_frame"],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def contact_sheet(checks: list[FrameCheck], out: Path, *, thumb: int = 160, columns: int = 8) -> None:
    """A grid of the session's frames with each face's box and the name the firmware gave it."""
    from PIL import Image, ImageDraw

    rows = (len(checks) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * thumb, max(rows, 1) * (thumb + 14)), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for index, check in enumerate(checks):
        with Image.open(check.photo.path) as image:
            frame = image.convert("RGB")
        scale = thumb / max(frame.size)
        small = frame.resize((max(1, round(frame.width * scale)), max(1, round(frame.height * scale))))
        x0, y0 = (index % columns) * thumb, (index // columns) * (thumb + 14)
        sheet.paste(small, (x0, y0))
        for face in check.printed:
            x1, y1, x2, y2 = (v * scale for v in face["box"])
            colour = (60, 220, 60) if face["name"] != UNKNOWN else (230, 60, 60)
            draw.rectangle([x0 + x1, y0 + y1, x0 + x2, y0 + y2], outline=colour, width=2)
            draw.text((x0 + x1 + 2, y0 + y1 + 1), f"{face['name']} {face['similarity']:.2f}", fill=colour)
        truth = check.photo.person or ("stranger" if check.photo.stranger else "")
        draw.text((x0 + 2, y0 + thumb + 1), truth, fill=(200, 200, 200))
    with atomic_path(out) as tmp:
        sheet.save(tmp, format="PNG")


def frame_times(models: AttendanceModels, checks: list[FrameCheck]) -> dict[str, Any]:
    """Time per frame with 0, 1 and `max_faces` faces: the K210 estimate from the two compile reports' cycle
    model (detector + the recognizer's time per face: one run, two with the flip policy; CPU work around them not
    counted), and, where QEMU counted them, the instructions per frame by number of faces: mean, range and how many
    frames (the soft KPU on an emulated CPU, not K210 time)."""
    reports = {role: compile_report(models.of(role)) for role in ROLES}
    latency = {"detector": float(reports["detector"]["totals"]["latency_ms"]),
               "recognizer": float(reports["recognizer"]["embedder"]["time_per_face_ms_estimate"])}
    most = models.cfg.attendance.max_faces
    times: dict[str, Any] = {
        "k210_estimate_ms": {f"{n}_face{'' if n == 1 else 's'}":
                             round(latency["detector"] + n * latency["recognizer"], 3) for n in sorted({0, 1, most})},
        "k210_estimate_basis": f"cycle model of the compile reports: {calibration_note()}"}
    by_faces: dict[int, list[int]] = {}
    for check in checks:
        if check.instructions is not None:
            by_faces.setdefault(len(check.printed), []).append(check.instructions)
    if by_faces:
        times["qemu_instructions_by_faces"] = {str(n): {"mean": int(np.mean(v)), "min": min(v), "max": max(v),
                                                        "frames": len(v)} for n, v in sorted(by_faces.items())}
    return times


def write_session(models: AttendanceModels, checks: list[FrameCheck], board: str,
                  threshold_permyriad: int) -> dict[str, Any]:
    out = models.cfg.build_dir / "attendance"
    report = session_report(checks, threshold_permyriad / 10000)
    report["board"] = board
    report["time_per_frame"] = frame_times(models, checks)
    write_attendance_csv(out / "attendance.csv", attendance_rows(checks))
    contact_sheet(checks, out / "contact_sheet.png")
    frames = [{"image": str(c.photo.path), "truth": c.photo.person, "stranger": c.photo.stranger,
               "faces": c.printed, "agrees": c.agrees, "instructions": c.instructions} for c in checks]
    write_json(out / "session.json", {"report": report, "frames": frames})
    return report


def format_session(report: dict[str, Any]) -> str:
    lines = [f"{report['frames']} frames on {report['board']}, {report['faces']} faces, {report['faces_named']} named; "
             f"the firmware agrees with the Python twin on {report['agree_with_python']} of {report['frames']} frames"]
    if "top1" in report:
        lines.append(f"enrolled people's photos: top-1 {report['top1']:.1%} of {report['enrolled_photos']} at "
                     f"threshold {report['threshold']:.4f} ({report['no_face']} without a detected face); the closest "
                     f"enrolled person is the right one for {report['closed_set_top1']:.1%}")
    if "stranger_photos" in report:
        rejection = report["stranger_rejection"]
        shown = "n/a" if rejection is None else f"{rejection:.1%}"
        lines.append(f"strangers: rejected {shown} of the {report['strangers_with_a_face']} of "
                     f"{report['stranger_photos']} photos with a detected face")
    times = report.get("time_per_frame", {})
    for faces, ms in times.get("k210_estimate_ms", {}).items():
        lines.append(f"K210 time per frame with {faces.replace('_', ' ')}: {ms} ms (estimate: "
                     f"{times['k210_estimate_basis']})")
    for faces, insn in times.get("qemu_instructions_by_faces", {}).items():
        lines.append(f"QEMU instructions per frame with {faces} face(s): {insn['mean']:,} (mean of {insn['frames']} "
                     f"frame(s), {insn['min']:,} to {insn['max']:,})")
    return "\n".join(lines)


def read_database(models: AttendanceModels, flash_image: Path | None = None):
    """The database the firmware loads: from a flash image's region, else the enrolled image."""
    from deploy.attendance.face_db import read_region, region_bytes

    att = models.cfg.attendance
    if flash_image is not None:
        from deploy.isp.image import read_flash_region

        spec = model_specs(models)["recognizer"].embedder
        data = read_flash_region(Path(flash_image), att.db_address, region_bytes(spec.embedding_size, att.capacity))
    else:
        path = database_path(models)
        if not path.is_file():
            raise PipelineError("no face database", path=path, expected="run `invoke enroll` first")
        data = path.read_bytes()
    return read_region(data)


def storage_image(models: AttendanceModels, board: str) -> Path:
    """The 16 MiB flash image a run uses as the board's flash: the simulated board's own (what `flash` wrote),
    else one made for this run from the kmodels and the enrolled database at their addresses."""
    from deploy.firmware.boards import FLASH_IMAGE_RUNNER, board_spec
    from deploy.isp.flasher import SIM_FLASH_NAME
    from hardware.k210 import FLASH_BYTES

    cfg = models.cfg
    if board_spec(board).runner == FLASH_IMAGE_RUNNER:
        image = cfg.build_dir / SIM_FLASH_NAME
        if not image.is_file():
            raise PipelineError("the simulated board's flash image is missing", path=image,
                                expected="run `invoke build flash --board sim` first")
        return image
    flash = bytearray(b"\xff" * FLASH_BYTES)
    parts = [(cfg.attendance.db_address, database_path(models))]
    if (board_spec(board).kmodel_storage or cfg.firmware.kmodel_storage) == "flash":
        parts += [(models.address(role), model_files(models.of(role))[0]) for role in ROLES]
    for address, path in parts:
        if not Path(path).is_file():
            raise PipelineError("missing", path=path, expected="run `invoke enroll` (and `invoke build`) first")
        data = Path(path).read_bytes()
        flash[address:address + len(data)] = data
    out = cfg.build_dir / "firmware" / f"{board}_flash.img"
    with atomic_path(out) as tmp:
        tmp.write_bytes(bytes(flash))
    return out


def run_session(models: AttendanceModels, board: str, photos: list[Photo], *,
                count_instructions: bool = False) -> tuple[list[FrameCheck], int]:
    """`face_recognize` on every photo (as camera frames, in boots of at most MAX_FRAMES), each frame checked
    against the Python twin's decisions with the database the board holds; also that database's threshold."""
    from deploy.firmware import memory_map as mm
    from deploy.firmware.boards import FLASH_IMAGE_RUNNER, HOST_RUNNER, board_spec
    from deploy.firmware.camera_frames import write_ppm_frames
    from deploy.firmware.run import boot_flash_image, run_host, run_qemu

    cfg = models.cfg
    runner = board_spec(board).runner
    flash = storage_image(models, board)
    db, _ = read_database(models, flash)
    if db is None:
        raise PipelineError("the board's face database is empty or corrupt", path=flash,
                            expected="run `invoke enroll` and flash it")
    names, templates = [r.name for r in db.records], [r.template for r in db.records]
    frames = write_ppm_frames([p.path for p in photos], cfg.build_dir / "firmware" / f"frames_{board}")
    timeout = cfg.firmware.run_timeout_s
    printed: list[list[dict]] = []
    counts: list[int | None] = []
    for start in range(0, len(frames), mm.MAX_FRAMES):
        batch = frames[start:start + mm.MAX_FRAMES]
        if runner == FLASH_IMAGE_RUNNER:
            result = boot_flash_image(flash, batch, command="face_recognize", count_instructions=count_instructions,
                                      timeout=timeout)
        elif runner == HOST_RUNNER:
            kmodels = {models.address(role): model_files(models.of(role))[0] for role in ROLES}
            result = run_host(Path(built(cfg, "host")["program"]), batch, flash_files=kmodels, storage=flash,
                              timeout=timeout)
        else:
            result = run_qemu(Path(built(cfg, "qemu")["image"]), batch, command="face_recognize",
                              flash_image=flash, storage=flash, count_instructions=count_instructions,
                              timeout=timeout)
        if len(result.frames) != len(batch):
            raise PipelineError(f"the firmware answered {len(result.frames)} of {len(batch)} frames",
                                expected="one JSON line per frame")
        printed += [frame.faces or [] for frame in result.frames]
        counts += [frame.instructions for frame in result.frames]
    reader = face_reader(models)
    threshold = db.threshold_permyriad
    checks = [FrameCheck(photo, faces, python_decisions(reader, photo, names, templates, threshold), count)
              for photo, faces, count in zip(photos, progress(printed, desc="python twin", unit="frame"), counts,
                                             strict=True)]
    return checks, threshold


def format_region(db, slots) -> str:
    """What a database region holds: each slot's state, then the people of the one in use."""
    lines = [f"slot {s.index}: {s.state}" + (f" (sequence {s.sequence})" if s.sequence is not None else "")
             + (f": {s.reason}" if s.reason else "") for s in slots]
    if db is None:
        lines.append("no valid database: nobody is enrolled")
        return "\n".join(lines)
    lines.append(f"{len(db.records)} of {db.capacity} people, threshold {db.threshold_permyriad / 10000:.4f}, "
                 f"sequence {db.sequence}")
    lines += [f"  {r.name}: {r.photos} photo(s)" for r in db.records]
    return "\n".join(lines)
