"""The whole pipeline for one board, as `invoke build` and `invoke flash` run it: every stage in order (each
skipped when its inputs are unchanged), then flashing, and on the simulated board a boot that shows detections."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.firmware.boards import board_spec, flashed_board
from pipeline.config import Config
from pipeline.errors import PipelineError


def board_config(cfg: Config, board: str) -> Config:
    """The config as the board needs it: where the kmodel is kept follows the board."""
    storage = board_spec(board).kmodel_storage or cfg.firmware.kmodel_storage
    return cfg.with_values({"deploy.board": board, "firmware.kmodel_storage": storage})


def preflight_rtthread(board: str, rtt_root: str | None) -> None:
    """Fail before hours of work when the RT-Thread build cannot run: the tree, its BSP, the SDK, the toolchain."""
    from deploy.firmware.boards import BSP_TARGETS
    from deploy.firmware.rtthread_tree import find_bsp, find_k210_sdk, find_rtt_root, find_toolchain

    target = BSP_TARGETS[board_spec(board).build_target]
    bsp = find_bsp(find_rtt_root(rtt_root), target.bsp)
    if target.needs_k210_sdk:
        find_k210_sdk(bsp)
    find_toolchain(target.bsp_prefix)


def preflight_port(port: str | None, board_type: str, check_port: bool) -> None:
    """With `flash` on the command line, a serial port must be given or found before the build starts."""
    if check_port and not port:
        from deploy.isp.ports import choose_port

        choose_port(board_type)


def build_for_board(cfg: Config, board: str, *, rtt_root: str | None = None, force: bool = False,
                    check_port: bool = False) -> dict[str, Any]:
    """train -> (prune) -> export/quantize -> compile -> render -> build for `board`; returns the build metrics."""
    from deploy.export import export_stage
    from deploy.firmware.stages import build_stage, render_stage
    from deploy.k210.compiler.compile_stage import compile_stage
    from models.prune_stage import prune_stage, prunes
    from models.train import train_stage

    cfg = board_config(cfg, board)
    if cfg.model.task == "attendance":
        from deploy.attendance.board import build_attendance

        return build_attendance(cfg, board, rtt_root=rtt_root, force=force)
    if board_spec(board).build_target != "host":
        preflight_rtthread(board, rtt_root)
    if board == "k210":
        preflight_port(cfg.deploy.port, cfg.deploy.board_type, check_port)
    train_stage(cfg, force=force)
    if prunes(cfg):
        prune_stage(cfg, force=force)
    export_stage(cfg, force=force)
    compile_stage(cfg, force=force)
    render_stage(cfg, force=force)
    return build_stage(cfg, board_spec(board).build_target, rtt_root=rtt_root, force=force).metrics


def built_artifacts(cfg: Config, board: str) -> tuple[Path, Path | None]:
    """(firmware .bin, kmodel file or None when it is linked in) of the last build for `board`."""
    from deploy.firmware.stages import render_metrics
    from pipeline.manifest import Manifest

    spec = flashed_board(board)
    target = spec.build_target
    entry = Manifest(cfg.build_dir).stage(f"build_{target}")
    if entry is None or not entry["metrics"].get("image"):
        raise PipelineError(f"no {target} firmware image", path=cfg.build_dir / "firmware" / target,
                            expected=f"run `invoke build --board {board}` first")
    render = render_metrics(cfg)
    wanted = spec.kmodel_storage
    if render["storage"] != wanted:
        raise PipelineError(f"the firmware keeps its kmodel {render['storage']}, the {board} board needs it {wanted}",
                            expected=f"run `invoke build --board {board}` again")
    kmodel = Path(render["kmodel"]) if wanted == "flash" else None
    return Path(entry["metrics"]["image"]), kmodel


@dataclass(frozen=True)
class DemoResult:
    images: list[Path]
    detections: list[list[dict]]
    pngs: list[Path]
    jsonl: Path


def demo_images(cfg: Config, count: int) -> list[Path]:
    """The first `count` validation images of the config's data set."""
    from models.data import load_records

    return [r.image_path for r in load_records(cfg, "val")[:count]]


def draw_detections(image_path: Path, detections: list[dict], classes: list[str], out: Path) -> None:
    from PIL import Image, ImageDraw

    from pipeline.atomic import atomic_path

    with Image.open(image_path) as img:
        canvas = img.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    for det in detections:
        x1, y1, x2, y2 = det["box"]
        label = det.get("label") or classes[int(det["class"])]
        draw.rectangle([x1, y1, x2, y2], outline=(255, 40, 40), width=2)
        draw.text((x1 + 2, max(0, y1 - 11)), f"{label} {det['score']:.2f}", fill=(255, 255, 0))
    with atomic_path(out) as tmp:
        canvas.save(tmp, format="PNG")


def show_on_sim(cfg: Config, images: list[Path]) -> DemoResult:
    """Boot the simulated board from its flash image on `images`; save PNGs with boxes and the JSON lines."""
    from deploy.firmware.stages import run_firmware
    from pipeline.atomic import write_text

    result = run_firmware(board_config(cfg, "sim"), "sim", images)
    if len(result.frames) != len(images):
        raise PipelineError(f"the firmware answered {len(result.frames)} of {len(images)} frames",
                            expected="one JSON line per frame on the console")
    out = cfg.build_dir / "demo"
    classes = list(cfg.dataset.classes)
    pngs = []
    for path, frame in zip(images, result.frames, strict=True):
        png = out / f"{path.stem}.png"
        draw_detections(path, frame.detections, classes, png)
        pngs.append(png)
    lines = [json.dumps({"image": str(p), "frame": f.frame, "detections": f.detections, "ms": f.ms})
             for p, f in zip(images, result.frames, strict=True)]
    jsonl = out / "detections.jsonl"
    write_text(jsonl, "\n".join(lines) + "\n")
    return DemoResult(images, [f.detections for f in result.frames], pngs, jsonl)

