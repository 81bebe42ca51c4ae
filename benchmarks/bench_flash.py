"""Flashing throughput at 1.5 Mbaud against the simulated board, as a ratio of the line rate (baud / 10 bytes/s),
for our flasher and for upstream kflash measured in the same run on the same image. The write window is read from
the board's own frame log (first FLASH_WRITE byte on the line to the last write reply), so both tools are measured
the same way. Two board models: the line alone (USB latency 1 ms, no flash time), and the line plus datasheet-class
SPI NOR erase/program times (stop-and-wait then bounds any flasher)."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from deploy.isp.flasher import flash_artifacts
from deploy.isp.packet import Op
from deploy.isp.simboard.options import SimOptions
from deploy.isp.simboard.process import running_simboard
from deploy.isp.upstream_kflash import kflash_available, run_kflash

BAUD = 1_500_000
IMAGE_BYTES = 1 << 20
GOAL = 0.85
NOISE_RATES = (0.0, 1e-4, 3e-4, 1e-3)  # probability that a byte is corrupted, each way
NOISE_IMAGE_BYTES = 1 << 16
BOARDS = {
    "line_only": SimOptions(idle_timeout_s=120, page_program_s=0.0, sector_erase_s=0.0, block_erase_s=0.0),
    "line_and_flash_timing": SimOptions(idle_timeout_s=120),
}


def write_ratio(frame_log: Path, baud: int = BAUD) -> dict[str, float]:
    """Payload bytes of all FLASH_WRITE frames over the window they occupied, as a fraction of the line rate."""
    writes = [r for r in map(json.loads, frame_log.read_text().splitlines())
              if r.get("op") == f"{Op.FLASH_WRITE:02X}" and r.get("note", "").startswith("write")]
    if not writes:
        raise RuntimeError(f"no flash writes in {frame_log}")
    first, last = writes[0], writes[-1]
    started = first["t_rx"] - first["size"] * 10 / baud
    window = last["t"] - started
    payload = sum(r["size"] - 16 for r in writes)
    return {"payload_bytes": payload, "write_seconds": round(window, 3),
            "kib_per_s": round(payload / window / 1024, 1),
            "ratio_of_line_rate": round(payload / window / (baud / 10), 3)}


def _ours(folder: Path, image: Path, board: SimOptions) -> dict[str, Any]:
    log = folder / "ours.log"
    started = time.monotonic()
    flash_artifacts(build_dir=folder / "ours", image=image, board="sim", board_type="dan", baud=BAUD,
                    sim_options=dataclasses.replace(board, log=str(log)), say=lambda _line: None,
                    show_progress=False)
    return {**write_ratio(log), "total_seconds": round(time.monotonic() - started, 2)}


def _kflash(folder: Path, image: Path, board: SimOptions) -> dict[str, Any]:
    log = folder / "kflash.log"
    started = time.monotonic()
    with running_simboard(folder / "kflash" / "sim_flash.img", dataclasses.replace(board, log=str(log))) as url:
        result = run_kflash(url, image, baud=BAUD, board="dan", timeout_s=600)
    if result.returncode != 0:
        return {"error": (result.stdout + result.stderr)[-500:]}
    return {**write_ratio(log), "total_seconds": round(time.monotonic() - started, 2)}


def _noisy_line(folder: Path) -> dict[str, Any]:
    """Our write throughput (vowstar dialect, line + flash timing) against the byte corruption rate, and its ratio to
    the clean line measured in the same run."""
    image = folder / "noisy.bin"
    image.write_bytes(os.urandom(NOISE_IMAGE_BYTES))
    rows = []
    for rate in NOISE_RATES:
        board = SimOptions(idle_timeout_s=120, corrupt_in=rate, corrupt_out=rate, seed=5)
        summary = flash_artifacts(build_dir=folder / f"noisy_{rate:g}", kmodel=image, board="sim", board_type="dan",
                                  baud=BAUD, sim_options=board, say=lambda _line: None, show_progress=False)
        session = summary.session
        rows.append({"corruption_rate": rate, "bytes_per_s": round(session["payload_bytes"] /
                                                                   session["write_seconds"], 1),
                     "frames": session["frames"], "line_faults_recovered": session["anomalies"]})
    for row in rows:
        row["ratio_to_clean"] = round(row["bytes_per_s"] / rows[0]["bytes_per_s"], 4)
    return {"image_bytes": NOISE_IMAGE_BYTES, "rows": rows}


def run(out_dir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {"baud": BAUD, "line_bytes_per_s": BAUD // 10, "image_bytes": IMAGE_BYTES,
                               "goal_ratio": GOAL, "kflash_installed": kflash_available()}
    with tempfile.TemporaryDirectory(prefix="bench_flash_") as tmp:
        folder = Path(tmp)
        image = folder / "firmware.bin"
        image.write_bytes(os.urandom(IMAGE_BYTES))
        for name, board in BOARDS.items():
            case = folder / name
            entry = {"ours": _ours(case, image, board)}
            if kflash_available():
                entry["kflash"] = _kflash(case, image, board)
                if "ratio_of_line_rate" in entry["kflash"]:
                    entry["ours_over_kflash"] = round(entry["ours"]["ratio_of_line_rate"] /
                                                      entry["kflash"]["ratio_of_line_rate"], 3)
            entry["ours_meets_goal"] = entry["ours"]["ratio_of_line_rate"] >= GOAL
            results[name] = entry
        results["noisy_line"] = _noisy_line(folder)
    _plot(results, Path(out_dir))
    return results


def _plot(results: dict[str, Any], out_dir: Path) -> None:
    from pipeline.plotting import new_figure, save_figure

    names = [name for name in BOARDS if name in results]
    fig, (ax, noisy) = new_figure(11, 3.5, columns=2)
    for offset, tool in ((-0.2, "ours"), (0.2, "kflash")):
        values = [results[n].get(tool, {}).get("ratio_of_line_rate", 0.0) for n in names]
        ax.bar([i + offset for i in range(len(names))], values, width=0.4, label=tool)
    ax.axhline(GOAL, color="k", linestyle="--", linewidth=1, label=f"goal {GOAL}")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("write throughput / line rate")
    ax.set_title(f"flash writes at {BAUD} baud, simulated K210")
    ax.legend()
    rows = results["noisy_line"]["rows"]
    noisy.plot([max(r["corruption_rate"], 1e-5) for r in rows], [r["bytes_per_s"] / 1024 for r in rows], "o-")
    noisy.set_xscale("log")
    noisy.set_yscale("log")
    noisy.set_xlabel("byte corruption rate, each way (0 plotted at 1e-5)")
    noisy.set_ylabel("write KiB/s")
    noisy.set_title("a noisy line (vowstar dialect, 64 KiB)")
    save_figure(fig, out_dir / "flash_throughput.png", dpi=100)
