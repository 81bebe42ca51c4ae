"""The firmware stages as the tasks call them: render, build, run (paths and parameters from the config)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy.firmware.boards import BOARD_NAMES, FIRMWARE_DIR
from deploy.firmware.build import build_firmware
from deploy.firmware.console import ConsoleResult
from deploy.firmware.frames import list_images, write_ppm_frames
from deploy.firmware.k210_build import build_k210
from deploy.firmware.k210_headers import HEADER_SOURCES
from deploy.firmware.model_spec import model_spec
from deploy.firmware.render import RenderOptions, render_firmware
from deploy.firmware.run import boot_flash_image, run_host, run_qemu
from deploy.isp.flasher import SIM_FLASH_NAME
from pipeline.atomic import write_json
from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.json_files import read_json_object
from pipeline.manifest import Manifest
from pipeline.stage import StageResult, run_stage


def firmware_dir(cfg: Config) -> Path:
    return cfg.build_dir / "firmware"


def rendered_dir(cfg: Config) -> Path:
    return firmware_dir(cfg) / "rendered"


def _read_report(path: Path) -> dict[str, Any]:
    return read_json_object(path, what="compile report", missing_hint="run `invoke compile` first, or --report")


def render_stage(cfg: Config, *, kmodel: Path | None = None, report: Path | None = None,
                 force: bool = False) -> StageResult:
    """Render the RT-Thread glue for build/<config>/model.kmodel + compile_report.json (or the given files)."""
    kmodel = Path(kmodel) if kmodel else cfg.build_dir / "model.kmodel"
    report = Path(report) if report else cfg.build_dir / "compile_report.json"
    if not kmodel.is_file():
        raise PipelineError("kmodel not found", path=kmodel, expected="run `invoke compile` first, or --kmodel")
    fw = cfg.get("firmware")
    options = RenderOptions(name=fw["name"] or cfg.name, storage=fw["kmodel_storage"],
                            flash_offset=cfg.get("deploy.kmodel_address"), camera=fw["camera"],
                            dma_channel=fw["dma_channel"])
    folder = rendered_dir(cfg)

    def work() -> dict[str, Any]:
        spec = model_spec(kmodel, _read_report(report), report, score_threshold=cfg.get("deploy.score_threshold"),
                          nms_iou=cfg.get("deploy.nms_iou"), max_candidates=fw["max_candidates"])
        rendered = render_firmware(spec, options, folder)
        return {"c_name": rendered.c_name, "folder": str(folder), "files": len(rendered.files),
                "storage": options.storage, "flash_offset": options.flash_offset, "kmodel": str(kmodel),
                "kmodel_bytes": spec.kmodel_size, "work_buffer_bytes": spec.work_buffer_bytes}

    # the rendered folder also carries copies of the runtime, the region layer and the rt_ai sources
    sources = [FIRMWARE_DIR / name for name in ("templates", "runtime", "app", "rt_ai")]
    inputs = [kmodel, *sources] + ([report] if report.is_file() else [])
    return run_stage(cfg.build_dir, "render", inputs=inputs, params={"options": options.__dict__, **fw},
                     outputs=[folder], work=work, force=force, tools=["jinja2"])


def render_metrics(cfg: Config) -> dict[str, Any]:
    """What the last render produced (folder, C name, kmodel storage and flash offset, sizes)."""
    entry = Manifest(cfg.build_dir).stage("render")
    if entry is None or not rendered_dir(cfg).is_dir():
        raise PipelineError("no rendered firmware", path=rendered_dir(cfg), expected="run `invoke render` first")
    return entry["metrics"]


def build_stage(cfg: Config, board: str, *, rtt_root: str | None = None, force: bool = False) -> StageResult:
    """Build the rendered firmware for host, qemu or k210 into build/<config>/firmware/<board>/."""
    if board not in BOARD_NAMES:
        raise PipelineError(f"unknown board {board!r}", field="--board", expected=" or ".join(BOARD_NAMES))
    render = render_metrics(cfg)
    out = firmware_dir(cfg) / board
    rounding = cfg.get("firmware.rounding")

    def work() -> dict[str, Any]:
        if board == "k210":
            return {"board": board, "image": str(build_k210(rendered_dir(cfg), out, rtt_root=rtt_root))}
        result = build_firmware(rendered_dir(cfg), board, out, rounding=rounding, kmodel_bytes=render["kmodel_bytes"],
                                work_bytes=render["work_buffer_bytes"])
        return {"board": board, "program": str(result.program), "image": str(result.image) if result.image else None,
                "size": result.size}

    inputs = [rendered_dir(cfg), FIRMWARE_DIR / "port", *HEADER_SOURCES]
    return run_stage(cfg.build_dir, f"build_{board}", inputs=inputs,
                     params={"board": board, "rounding": rounding, "rtt_root": rtt_root}, outputs=[out], work=work,
                     force=force)


def run_firmware(cfg: Config, board: str, images: Path | list[Path], *, dump: bool = False,
                 count_instructions: bool = False) -> ConsoleResult:
    """Run the firmware on every image: the host or qemu build directly, or (`sim`) boot the simulated K210 from
    the flash image `invoke flash --board sim` wrote. Results also go to firmware/run_<board>.json."""
    if board not in ("host", "qemu", "sim"):
        raise PipelineError(f"`run` drives host, qemu and sim, not {board!r}", field="--board",
                            expected="host, qemu or sim (a real K210 runs what `invoke flash --board k210` wrote)")
    render = render_metrics(cfg)
    sources = list_images(images) if isinstance(images, Path) else list(images)
    frames = write_ppm_frames(sources, firmware_dir(cfg) / f"frames_{board}")
    timeout = float(cfg.get("firmware.run_timeout_s"))
    command = f"{render['c_name']}_detect"
    if board == "sim":
        flash_image = cfg.build_dir / SIM_FLASH_NAME
        if not flash_image.is_file():
            raise PipelineError("the simulated board's flash image is missing", path=flash_image,
                                expected="run `invoke build flash --board sim` first")
        result = boot_flash_image(flash_image, frames, command=command, dump=dump,
                                  count_instructions=count_instructions, timeout=timeout)
    else:
        build = Manifest(cfg.build_dir).stage(f"build_{board}")
        if build is None:
            raise PipelineError(f"no {board} build", path=firmware_dir(cfg) / board,
                                expected=f"run `invoke build --board {board}` first")
        flash = {render["flash_offset"]: Path(render["kmodel"])} if render["storage"] == "flash" else {}
        if board == "host":
            result = run_host(Path(build["metrics"]["program"]), frames, flash_files=flash, dump=dump,
                              timeout=timeout)
        else:
            result = run_qemu(Path(build["metrics"]["image"]), frames, command=command, flash_files=flash,
                              dump=dump, count_instructions=count_instructions, timeout=timeout)
    write_json(firmware_dir(cfg) / f"run_{board}.json",
               {"board": board, "images": [str(p) for p in sources], "frames": [f.__dict__ for f in result.frames]})
    return result
