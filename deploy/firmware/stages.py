"""The firmware stages as the tasks call them: render, build, run (paths and parameters from the config)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy.firmware.boards import FIRMWARE_DIR, FLASH_IMAGE_RUNNER, HOST_RUNNER, board_spec, check_build_target
from deploy.firmware.build import build_host, rendered_model_name, sram_report
from deploy.firmware.camera_frames import list_images, write_ppm_frames
from deploy.firmware.console import ConsoleResult
from deploy.firmware.k210_headers import HEADER_SOURCES
from deploy.firmware.model_spec import model_spec
from deploy.firmware.render import RenderOptions, render_firmware
from deploy.firmware.rtthread_build import build_board
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
    fw = cfg.firmware
    options = RenderOptions(name=fw.name or cfg.name, storage=fw.kmodel_storage, flash_offset=cfg.deploy.kmodel_address)
    folder = rendered_dir(cfg)

    def work() -> dict[str, Any]:
        spec = model_spec(kmodel, _read_report(report), report, score_threshold=cfg.deploy.score_threshold,
                          nms_iou=cfg.deploy.nms_iou, max_candidates=fw.max_candidates)
        rendered = render_firmware(spec, options, folder)
        return {"c_name": rendered.c_name, "command": rendered.command, "kind": spec.kind, "folder": str(folder),
                "files": len(rendered.files),
                "storage": options.storage, "flash_offset": options.flash_offset, "kmodel": str(kmodel),
                "kmodel_bytes": spec.kmodel_size, "work_buffer_bytes": spec.work_buffer_bytes}

    sources = [FIRMWARE_DIR / name for name in ("templates", "runtime", "app", "rt_ai")]  # copied into it
    inputs = [kmodel, *sources, *HEADER_SOURCES] + ([report] if report.is_file() else [])  # + generated headers
    params = {"options": options.__dict__, **cfg.values["firmware"]}
    return run_stage(cfg.build_dir, "render", inputs=inputs, params=params,
                     outputs=[folder], work=work, force=force, tools=["jinja2"])


def render_metrics(cfg: Config) -> dict[str, Any]:
    """What the last render produced (folder, C name, kmodel storage and flash offset, sizes)."""
    entry = Manifest(cfg.build_dir).stage("render")
    if entry is None or not rendered_dir(cfg).is_dir():
        raise PipelineError("no rendered firmware", path=rendered_dir(cfg), expected="run `invoke render` first")
    return entry["metrics"]


def build_on_rtthread(cfg: Config, board: str, out: Path, *, rtt_root: str | None) -> dict[str, Any]:
    """Build the rendered model into the board's RT-Thread BSP (copied into build/<config>/firmware/<board>_bsp)."""
    render = render_metrics(cfg)
    rendered = rendered_dir(cfg)
    embedded = render["storage"] == "embedded"
    kmodels = {rendered_model_name(rendered): Path(render["kmodel"])} if embedded else {}
    result = build_board(board, [rendered], out, firmware_dir(cfg) / f"{board}_bsp", rtt_root=rtt_root,
                         camera=cfg.firmware.camera, rounding=cfg.firmware.rounding, kernel=cfg.firmware.kpu_kernel,
                         rt_ai=cfg.firmware.rt_ai, rtak_lib=cfg.firmware.rtak_lib, embedded_kmodels=kmodels)
    report = result.report
    size = sram_report((report.text, report.data, report.bss), render["kmodel_bytes"], render["work_buffer_bytes"],
                       embedded)
    return {"board": board, "image": str(result.image), "elf": str(result.folder / "rtthread.elf"),
            "map": str(result.folder / "rtthread.map"), "rtt_root": str(result.rtt_root),
            "toolchain": result.toolchain.describe(),
            "size": size, "models": report.models, "components": report.components}


def build_stage(cfg: Config, board: str, *, rtt_root: str | None = None, force: bool = False) -> StageResult:
    """Build the rendered firmware for host, qemu (RT-Thread's qemu-virt64-riscv BSP) or k210 (bsp/k210) into
    build/<config>/firmware/<board>/."""
    check_build_target(board)
    render = render_metrics(cfg)
    out = firmware_dir(cfg) / board
    rounding, kernel = cfg.firmware.rounding, cfg.firmware.kpu_kernel

    def work() -> dict[str, Any]:
        if board != "host":
            return build_on_rtthread(cfg, board, out, rtt_root=rtt_root)
        result = build_host(rendered_dir(cfg), out, rounding=rounding, kernel=kernel,
                            kmodel_bytes=render["kmodel_bytes"], work_bytes=render["work_buffer_bytes"])
        return {"board": board, "program": str(result.program), "size": result.size}

    return run_stage(cfg.build_dir, f"build_{board}", inputs=[rendered_dir(cfg), FIRMWARE_DIR / "port"],
                     params={"board": board, "rounding": rounding, "kpu_kernel": kernel, "rtt_root": rtt_root,
                             "camera": cfg.firmware.camera, "rt_ai": cfg.firmware.rt_ai,
                             "rtak_lib": cfg.firmware.rtak_lib}, outputs=[out], work=work, force=force)


def format_build(metrics: dict[str, Any]) -> str:
    """The build's size and memory report: sections, SRAM use and, on RT-Thread, what each model and component adds."""
    size = metrics["size"]
    lines = [f"text {size['text']} B, data {size['data']} B, bss {size['bss']} B; with the kmodel "
             f"({'in the image' if size['kmodel_in_image'] else 'copied from flash'}) and working memory "
             f"{size['total']} B = {size['percent']} % of the K210's 6 MiB SRAM"]
    for name, found in metrics.get("models", {}).items():
        kmodel = found.get("kmodel")
        where = f", kmodel {kmodel['bytes']} B at {kmodel['address']}" if kmodel else ", kmodel read from flash"
        lines.append(f"model {name}: msh command {found['msh']} at {found['command']}, rt_ai registration at "
                     f"{found['registration']}{where}")
    components = metrics.get("components", {})
    if components:
        lines.append("bytes by component: " + ", ".join(f"{k} {v}" for k, v in list(components.items())[:8]))
    return "\n".join(lines)


def run_firmware(cfg: Config, board: str, images: Path | list[Path], *, dump: bool = False,
                 count_instructions: bool = False) -> ConsoleResult:
    """Run the firmware on every image: the host or qemu build directly, or (`sim`) boot the simulated K210 from
    the flash image `invoke flash --board sim` wrote. Results also go to firmware/run_<board>.json."""
    spec = board_spec(board)
    if not spec.runs_here:
        raise PipelineError(f"`run` drives host, qemu and sim, not {board!r}", field="--board",
                            expected="host, qemu or sim (a real K210 runs what `invoke flash --board k210` wrote)")
    render = render_metrics(cfg)
    sources = list_images(images) if isinstance(images, Path) else list(images)
    frames = write_ppm_frames(sources, firmware_dir(cfg) / f"frames_{board}")
    timeout = cfg.firmware.run_timeout_s
    command = render["command"]
    if spec.runner == FLASH_IMAGE_RUNNER:
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
        if spec.runner == HOST_RUNNER:
            result = run_host(Path(build["metrics"]["program"]), frames, flash_files=flash, dump=dump,
                              timeout=timeout)
        else:
            result = run_qemu(Path(build["metrics"]["image"]), frames, command=command, flash_files=flash,
                              dump=dump, count_instructions=count_instructions, timeout=timeout)
    write_json(firmware_dir(cfg) / f"run_{board}.json",
               {"board": board, "images": [str(p) for p in sources], "frames": [f.__dict__ for f in result.frames]})
    return result
