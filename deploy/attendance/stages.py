"""The attendance system's stages: both models trained and compiled by their own configs, the firmware rendered
and built with both, the students enrolled on the host into a database image, everything flashed as one kfpkg,
and a session's photos named by the firmware, with its decisions checked against the Python twin's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.attendance.render import AttendanceApp, render_attendance
from deploy.firmware.boards import FIRMWARE_DIR, board_spec
from deploy.firmware.model_spec import ModelSpec, model_spec
from deploy.firmware.render import RenderOptions, model_folder, render_firmware
from hardware.k210 import KPU_RAM_BYTES, SRAM_BYTES
from pipeline.config import Config, load_config
from pipeline.errors import PipelineError
from pipeline.json_files import read_json_object
from pipeline.stage import StageResult, run_stage

ROLES = ("detector", "recognizer")  # each is also the model.task its config must have
DB_NAME = "face_db.bin"


@dataclass(frozen=True)
class AttendanceModels:
    """The attendance config and the configs of its two models."""

    cfg: Config
    detector: Config
    recognizer: Config

    def of(self, role: str) -> Config:
        return self.detector if role == "detector" else self.recognizer

    def address(self, role: str) -> int:
        return getattr(self.cfg.attendance, f"{role}_address")


def attendance_models(cfg: Config) -> AttendanceModels:
    """Load the detector and recognizer configs an attendance config names, each checked for its task."""
    if cfg.model.task != "attendance":
        raise PipelineError(f"model.task is {cfg.model.task!r}", path=cfg.path, field="model.task",
                            expected="attendance")
    loaded = {}
    for role in ROLES:
        path = cfg.resolve_path(getattr(cfg.attendance, role))
        if path is None:
            raise PipelineError("missing", path=cfg.path, field=f"attendance.{role}",
                                expected=f"the path of a {role} config YAML")
        sub = load_config(path)
        if sub.model.task != role:
            raise PipelineError(f"{path.name} has model.task {sub.model.task!r}", path=cfg.path,
                                field=f"attendance.{role}", expected=f"a {role} config")
        loaded[role] = sub
    if loaded["detector"].name == loaded["recognizer"].name:
        raise PipelineError("detector and recognizer configs share a name", path=cfg.path,
                            field="attendance.recognizer", expected="two config files with different names")
    return AttendanceModels(cfg, loaded["detector"], loaded["recognizer"])


def prepare_models(models: AttendanceModels, *, force: bool = False) -> None:
    """Train (or reuse), export and compile both models, each in its own build folder."""
    from deploy.export import export_stage
    from deploy.k210.compiler.compile_stage import compile_stage
    from models.recognizer.train import train_recognizer_stage
    from models.train import train_stage

    for role in ROLES:
        sub = models.of(role)
        print(f"[attendance] {role}: {sub.path.name} -> {sub.build_dir}")
        (train_recognizer_stage if role == "recognizer" else train_stage)(sub, force=force)
        export_stage(sub, force=force)
        compile_stage(sub, force=force)


def model_files(sub: Config) -> tuple[Path, Path]:
    """(kmodel, compile report) of a model config; PipelineError when it was not compiled."""
    kmodel, report = sub.build_dir / "model.kmodel", sub.build_dir / "compile_report.json"
    if not kmodel.is_file():
        raise PipelineError("kmodel not found", path=kmodel, expected=f"run `invoke compile --config {sub.path}`")
    return kmodel, report


def compile_report(sub: Config) -> dict[str, Any]:
    """The compile report of a model config's kmodel."""
    return read_json_object(model_files(sub)[1], what="compile report",
                            missing_hint=f"run `invoke compile --config {sub.path}`")


def model_specs(models: AttendanceModels) -> dict[str, ModelSpec]:
    """role -> the compiled model as the firmware sees it (thresholds from the attendance config's deploy.*)."""
    specs = {}
    for role in ROLES:
        kmodel, report = model_files(models.of(role))
        specs[role] = model_spec(kmodel, compile_report(models.of(role)), report,
                                 score_threshold=models.cfg.deploy.score_threshold,
                                 nms_iou=models.cfg.deploy.nms_iou, max_candidates=models.cfg.firmware.max_candidates)
    if specs["detector"].detector is None or specs["recognizer"].embedder is None:
        raise PipelineError("the compiled models are not a detector and a recognizer", path=models.cfg.path,
                            field="attendance.detector / attendance.recognizer",
                            expected="a detector config and a recognizer config")
    return specs


def c_names(models: AttendanceModels) -> dict[str, str]:
    from deploy.firmware.c_names import model_identifier

    return {role: model_identifier(models.of(role).firmware.name or models.of(role).name) for role in ROLES}


def attendance_app(models: AttendanceModels, specs: dict[str, ModelSpec]) -> AttendanceApp:
    att = models.cfg.attendance
    names = c_names(models)
    return AttendanceApp(detector=names["detector"], recognizer=names["recognizer"],
                         embedding_size=specs["recognizer"].embedder.embedding_size, max_faces=att.max_faces,
                         enroll_frames=att.enroll_frames, threshold_permyriad=round(att.threshold * 10000),
                         capacity=att.capacity, db_address=att.db_address, test_hooks=att.test_hooks)


def flash_layout(models: AttendanceModels, specs: dict[str, ModelSpec], storage: str) -> list[dict[str, Any]]:
    """What lies where in the 16 MiB flash (kmodels only when kept in flash); PipelineError on an overlap."""
    from deploy.attendance.face_db import region_bytes
    from hardware.k210 import FLASH_BYTES

    app = attendance_app(models, specs)
    regions = [{"what": "face database", "address": app.db_address,
                "bytes": region_bytes(app.embedding_size, app.capacity)}]
    if storage == "flash":
        regions += [{"what": f"{role} kmodel", "address": models.address(role), "bytes": specs[role].kmodel_size}
                    for role in ROLES]
    regions.sort(key=lambda r: r["address"])
    for before, after in zip(regions, regions[1:], strict=False):
        if before["address"] + before["bytes"] > after["address"]:
            raise PipelineError(f"the {before['what']} ({before['bytes']} B at {before['address']:#x}) overlaps the "
                                f"{after['what']} at {after['address']:#x}", path=models.cfg.path,
                                field="attendance.*_address", expected="regions that do not overlap")
    if regions[-1]["address"] + regions[-1]["bytes"] > FLASH_BYTES:
        raise PipelineError(f"the {regions[-1]['what']} passes the end of the {FLASH_BYTES >> 20} MiB flash",
                            path=models.cfg.path, field="attendance.*_address", expected="a lower address")
    return regions


def rendered_dirs(cfg: Config) -> dict[str, Path]:
    root = cfg.build_dir / "firmware" / "rendered"
    return {"detector": root / "detector", "recognizer": root / "recognizer", "app": root / "app"}


def render_pair(specs: dict[str, ModelSpec], app: AttendanceApp, addresses: dict[str, int], storage: str,
                folders: dict[str, Path]) -> None:
    """Render the detector and the recognizer (each with its flash address) and the application into `folders`
    (keys detector, recognizer, app)."""
    names = {"detector": app.detector, "recognizer": app.recognizer}
    for role in ROLES:
        render_firmware(specs[role], RenderOptions(name=names[role], storage=storage, flash_offset=addresses[role]),
                        folders[role])
    render_attendance(app, folders["app"])


def render_attendance_stage(models: AttendanceModels, storage: str, *, force: bool = False) -> StageResult:
    """Render both models and the attendance application for the config."""
    cfg = models.cfg
    folders = rendered_dirs(cfg)

    def work() -> dict[str, Any]:
        specs = model_specs(models)
        layout = flash_layout(models, specs, storage)
        app = attendance_app(models, specs)
        render_pair(specs, app, {role: models.address(role) for role in ROLES}, storage, folders)
        return {"storage": storage, "names": {"detector": app.detector, "recognizer": app.recognizer},
                "commands": list(app.commands()), "flash_layout": layout,
                "kmodels": {role: str(specs[role].kmodel) for role in ROLES},
                "kmodel_bytes": {role: specs[role].kmodel_size for role in ROLES},
                "work_buffer_bytes": {role: specs[role].work_buffer_bytes for role in ROLES}}

    inputs = [p for role in ROLES for p in model_files(models.of(role))] + [
        FIRMWARE_DIR / name for name in ("templates", "runtime", "app", "rt_ai", "attendance")]
    return run_stage(cfg.build_dir, "render", inputs=inputs, params={"storage": storage, **cfg.values["attendance"],
                                                                      "deploy": cfg.values["deploy"],
                                                                      "firmware": cfg.values["firmware"]},
                     outputs=list(folders.values()), work=work, force=force, tools=["jinja2"])


def memory_plan(sections: tuple[int, int, int], render: dict[str, Any], kpu_ram_peaks: dict[str, int]) -> dict:
    """Firmware (the database lives in its bss) + both kmodels (copied from flash into SRAM when kept there) + both
    working buffers, against the K210's 6 MiB SRAM; each model's KPU RAM peak against the 2 MiB they share in turn."""
    text, data, bss = sections
    kmodels = sum(render["kmodel_bytes"].values()) if render["storage"] == "flash" else 0
    work = sum(render["work_buffer_bytes"].values())
    total = text + data + bss + kmodels + work
    plan = {"text": text, "data": data, "bss": bss, "kmodels_in_sram": kmodels, "work": work, "total": total,
            "sram": SRAM_BYTES, "percent": round(100.0 * total / SRAM_BYTES, 1), "kpu_ram_peaks": kpu_ram_peaks,
            "kpu_ram": KPU_RAM_BYTES}
    if total > SRAM_BYTES:
        raise PipelineError(f"firmware + both kmodels + working memory need {total} B", field="memory plan",
                            expected=f"<= {SRAM_BYTES} B, the K210's SRAM (smaller models or capacity)")
    worst = max(kpu_ram_peaks.values())
    if worst > KPU_RAM_BYTES:
        raise PipelineError(f"a model needs {worst} B of KPU RAM", field="memory plan",
                            expected=f"<= {KPU_RAM_BYTES} B")
    return plan


def _kpu_ram_peaks(models: AttendanceModels) -> dict[str, int]:
    peaks = {}
    for role in ROLES:
        report = compile_report(models.of(role))
        peaks[role] = int(report.get("totals", {}).get("kpu_ram_peak_bytes", 0))
    return peaks


def build_attendance_stage(models: AttendanceModels, board: str, *, rtt_root: str | None = None,
                           force: bool = False) -> StageResult:
    """Render, then build the firmware with both models and the attendance application for `board`; the build
    report holds the memory plan (refused over the K210's 6 MiB SRAM or 2 MiB KPU RAM)."""
    from deploy.attendance.render import APP_FOLDER
    from deploy.firmware.build import build_host
    from deploy.firmware.render import COMPONENT
    from deploy.firmware.rtthread_build import build_board

    cfg = models.cfg
    spec = board_spec(board)
    storage = spec.kmodel_storage or cfg.firmware.kmodel_storage
    render = render_attendance_stage(models, storage, force=force).metrics
    folders = rendered_dirs(cfg)
    names = render["names"]
    app_dir = folders["app"] / COMPONENT / APP_FOLDER
    target = spec.build_target
    out = cfg.build_dir / "firmware" / target

    def work() -> dict[str, Any]:
        if target == "host":
            result = build_host(folders["detector"], out, rounding=cfg.firmware.rounding,
                                kernel=cfg.firmware.kpu_kernel,
                                extra_dirs=(model_folder(folders["recognizer"], names["recognizer"]), app_dir),
                                command="face_recognize")
            sections = (result.size["text"], result.size["data"], result.size["bss"])
            built = {"program": str(result.program)}
        else:
            embedded = {names[r]: Path(render["kmodels"][r]) for r in ROLES} if storage == "embedded" else {}
            result = build_board(target, [folders["detector"], folders["recognizer"]], out,
                                 cfg.build_dir / "firmware" / f"{target}_bsp", rtt_root=rtt_root,
                                 camera=cfg.firmware.camera, rounding=cfg.firmware.rounding,
                                 kernel=cfg.firmware.kpu_kernel, rt_ai=cfg.firmware.rt_ai,
                                 rtak_lib=cfg.firmware.rtak_lib, embedded_kmodels=embedded, apps=(app_dir,),
                                 app_commands=tuple(render["commands"]))
            report = result.report
            sections = (report.text, report.data, report.bss)
            built = {"image": str(result.image), "elf": str(result.folder / "rtthread.elf"),
                     "models": report.models, "components": report.components,
                     "toolchain": result.toolchain.describe()}
        return {"board": board, "target": target, **built, "commands": render["commands"],
                "flash_layout": render["flash_layout"],
                "memory_plan": memory_plan(sections, render, _kpu_ram_peaks(models))}

    return run_stage(cfg.build_dir, f"build_{target}", inputs=[*folders.values(), FIRMWARE_DIR / "port"],
                     params={"board": target, "rtt_root": rtt_root, "firmware": cfg.values["firmware"]},
                     outputs=[out], work=work, force=force)


def format_attendance_build(metrics: dict[str, Any]) -> str:
    plan = metrics["memory_plan"]
    lines = [f"memory plan: text {plan['text']} + data {plan['data']} + bss {plan['bss']} (with the face database) + "
             f"kmodels {plan['kmodels_in_sram']} + working memory {plan['work']} = {plan['total']} B, "
             f"{plan['percent']} % of the K210's {plan['sram'] >> 20} MiB SRAM; KPU RAM peaks "
             + ", ".join(f"{role} {peak} B" for role, peak in plan["kpu_ram_peaks"].items())
             + f" of {plan['kpu_ram'] >> 20} MiB (used in turn)"]
    lines += [f"flash {r['address']:#08x}: {r['what']} ({r['bytes']} B)" for r in metrics["flash_layout"]]
    lines.append("msh commands: " + " ".join(metrics["commands"]))
    return "\n".join(lines)


def built(cfg: Config, target: str) -> dict[str, Any]:
    """The metrics of the last attendance build for a build target (host, qemu, k210)."""
    from pipeline.manifest import Manifest

    entry = Manifest(cfg.build_dir).stage(f"build_{target}")
    if entry is None:
        raise PipelineError(f"no {target} build", path=cfg.build_dir / "firmware" / target,
                            expected=f"run `invoke build --config {cfg.path}` for that board first")
    return entry["metrics"]
