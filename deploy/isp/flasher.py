"""`invoke flash`: turn artifacts into flash entries, check the layout, run a session on a real or simulated board,
and summarise what was written where."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from deploy.firmware.boards import flashed_board
from deploy.isp.image import FLASH_SIZE
from deploy.isp.isp_prog import load_flash_program
from deploy.isp.kfpkg import FlashEntry, check_layout, read_kfpkg
from deploy.isp.link import Timing
from deploy.isp.session import SessionReport, run_session
from deploy.isp.simboard.options import SimOptions
from deploy.isp.transports import SIMULATED, board_port
from pipeline.atomic import write_json
from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.stage import run_stage

SIM_FLASH_NAME = "sim_flash.img"
REPORT_NAME = "flash_report.json"


def plan_entries(*, image: Path | None = None, kmodel: Path | None = None, kmodel_address: int = 0x300000,
                 kfpkg: Path | None = None, flash_size: int = FLASH_SIZE) -> tuple[list[FlashEntry], list[str]]:
    """Flash entries for the given artifacts (firmware wrapped as a bootable image at 0, kmodel raw at its address,
    kfpkg entries as listed), with the whole layout checked; returns (entries, warnings)."""
    entries: list[FlashEntry] = []
    for path, address, bootable in ((image, 0, True), (kmodel, kmodel_address, False)):
        if path is None:
            continue
        path = Path(path)
        if not path.is_file():
            raise PipelineError("file not found", path=path, field="--image" if bootable else "--kmodel")
        entries.append(FlashEntry(path.name, address, path.read_bytes(), bootable))
    if kfpkg is not None:
        entries += read_kfpkg(Path(kfpkg), flash_size)
    if not entries:
        raise PipelineError("nothing to flash", field="--image/--kmodel/--kfpkg", expected="at least one artifact")
    where = kfpkg or image or kmodel
    warnings = check_layout(entries, where, flash_size)
    firmware_end = max((e.end for e in entries if e.bootable and e.address == 0), default=0)
    warnings += [f"{e.name} at 0x{e.address:X} lies below 0x300000, where MaixPy-style layouts keep firmware"
                 for e in entries if not e.bootable and e.address < 0x300000 and firmware_end]
    return entries, warnings


@dataclass
class FlashSummary:
    port: str
    entries: list[dict]
    session: dict
    seconds: float
    flash_image: str | None = None

    def lines(self) -> list[str]:
        rows = [f"flashed through {self.port} at {self.session['baud']} baud "
                f"({self.session['board_family']} reset) in {self.seconds:.1f} s:"]
        for e in self.entries:
            rows.append(f"  0x{e['address']:06X}..0x{e['end']:06X}  {e['kind']:<15} {e['bytes']:>9} B  "
                        f"sha256 {e['sha256'][:16]}…  {e['name']}")
        rows.append(f"  verification: {self.session['verification']}")
        rows.append(f"  reboot: {self.session['reboot']}")
        if self.session["anomalies"]:
            rows.append(f"  line faults recovered: {self.session['anomalies']}")
        if self.flash_image:
            rows.append(f"  simulated flash image: {self.flash_image}")
        return rows


def _summary(port: str, entries: list[FlashEntry], report: SessionReport, seconds: float,
             flash_image: Path | None) -> FlashSummary:
    rows = [{"name": e.name, "address": e.address, "end": e.end, "bytes": len(e.wire),
             "kind": "firmware image" if e.bootable else "raw data",
             "sha256": hashlib.sha256(e.wire).hexdigest()} for e in entries]
    session = {k: v for k, v in asdict(report).items() if k != "log"}
    return FlashSummary(port, rows, session, round(seconds, 3), str(flash_image) if flash_image else None)


def flash_artifacts(*, build_dir: Path, image: Path | None = None, kmodel: Path | None = None,
                    kmodel_address: int = 0x300000, kfpkg: Path | None = None, board: str = "sim",
                    board_type: str = "auto", port: str | None = None, baud: int = 1_500_000,
                    isp_prog: Path | None = None, stub_dialect: str | None = None,
                    sim_options: SimOptions | None = None, timing: Timing | None = None,
                    say: Callable[[str], None] = print, show_progress: bool = True) -> FlashSummary:
    """Flash the given artifacts; `board="sim"` starts the simulated board on build_dir/sim_flash.img unless `port`
    names one already running. Writes build_dir/flash_report.json; raises PipelineError on any failure."""
    transport = flashed_board(board).flash_transport
    entries, warnings = plan_entries(image=image, kmodel=kmodel, kmodel_address=kmodel_address, kfpkg=kfpkg)
    for warning in warnings:
        say(f"warning: {warning}")
    program = load_flash_program(isp_prog, stub_dialect)
    flash_image = Path(build_dir) / SIM_FLASH_NAME if transport == SIMULATED and not port else None
    started = time.monotonic()
    with board_port(transport, port, board_type, flash_image or Path(build_dir), sim_options, say) as url:
        report = run_session(url, entries, program, board_type=board_type, baud=baud, timing=timing, say=say,
                             show_progress=show_progress)
    summary = _summary(url, entries, report, time.monotonic() - started, flash_image)
    write_json(Path(build_dir) / REPORT_NAME, asdict(summary))
    for line in summary.lines():
        say(line)
    return summary


def flash_stage(cfg: Config, *, image: Path | None = None, kmodel: Path | None = None, kfpkg: Path | None = None,
                sim_options: SimOptions | None = None, show_progress: bool = True) -> FlashSummary:
    """`invoke flash` with the config's deploy.* values (board, port, baud, board_type, kmodel_address, isp_prog);
    always runs (a board's contents are not an artifact we can see) and records its metrics in the manifest."""
    deploy = cfg.deploy
    params = {key: cfg.values["deploy"][key] for key in ("board", "board_type", "port", "baud", "kmodel_address",
                                                         "isp_prog", "stub_dialect")}
    done: list[FlashSummary] = []

    def work() -> dict:
        summary = flash_artifacts(build_dir=cfg.build_dir, image=image, kmodel=kmodel,
                                  kmodel_address=deploy.kmodel_address, kfpkg=kfpkg, board=deploy.board,
                                  board_type=deploy.board_type, port=deploy.port, baud=deploy.baud,
                                  isp_prog=cfg.resolve_path(deploy.isp_prog), stub_dialect=deploy.stub_dialect,
                                  sim_options=sim_options, show_progress=show_progress)
        done.append(summary)
        session = summary.session
        return {"entries": len(summary.entries), "bytes": session["payload_bytes"], "baud": session["baud"],
                "write_seconds": round(session["write_seconds"], 3), "verification": session["verification"],
                "line_faults_recovered": session["anomalies"]}

    inputs = [Path(p) for p in (image, kmodel, kfpkg) if p is not None]
    run_stage(cfg.build_dir, "flash", inputs=inputs, params=params, outputs=[cfg.build_dir / REPORT_NAME], work=work,
              force=True)
    return done[0]
