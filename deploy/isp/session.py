"""One flashing session on one port: ROM stage, flash-stage program, writes, verification, reboot."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import serial

from deploy.isp.isp_prog import FlashProgram
from deploy.isp.isp_prog_protocol import BaudLost, FlashStage, baud_candidates
from deploy.isp.kfpkg import FlashEntry
from deploy.isp.link import IspError, IspLink, Timing
from deploy.isp.reset import ResetFamily, apply_steps, families_for
from deploy.isp.rom import ROM_BAUD, RomStage
from pipeline.progress import bar

BOOT_ATTEMPTS = 3


@dataclass
class SessionReport:
    board_family: str = ""
    baud: int = ROM_BAUD
    frames: int = 0
    anomalies: int = 0
    payload_bytes: int = 0
    write_seconds: float = 0.0
    verification: str = ""
    reboot: str = ""
    log: list[str] = field(default_factory=list)


def open_port(url: str, baud: int = ROM_BAUD) -> serial.SerialBase:
    """Open a device path or pyserial URL with DTR/RTS released before opening, so opening does not reset the board."""
    try:
        port = serial.serial_for_url(url, do_not_open=True, baudrate=baud, timeout=0.005)
        port.dtr = False
        port.rts = False
        port.open()
    except (serial.SerialException, ValueError, OSError) as exc:
        raise IspError(f"cannot open {url}: {exc}", field="--port", expected="a serial device or a pyserial URL") \
            from exc
    return port


@contextlib.contextmanager
def _bytes_bar(desc: str, total: int, show: bool) -> Iterator[Callable[[int], object]]:
    """A byte progress bar (KiB, KiB/s, ETA) yielding its update function; silent when `show` is False."""
    if not show:
        yield lambda _n: None
        return
    with bar(desc=desc, total=total, unit="iB", unit_scale=True) as progress:
        progress.unit_divisor = 1024  # binary prefixes: tqdm then shows kiB, kiB/s
        progress.refresh()
        yield progress.update


def run_session(url: str, entries: list[FlashEntry], program: FlashProgram, *, board_type: str = "auto",
                baud: int = 1_500_000, timing: Timing | None = None, say: Callable[[str], None] = print,
                show_progress: bool = True) -> SessionReport:
    """Flash `entries` through the board on `url`; raises IspError on any failure (nothing is claimed that did not
    happen: verification is reported as unavailable when the flash-stage program cannot read)."""
    report = SessionReport()
    port = open_port(url)
    try:
        link = IspLink(port, timing or Timing(), log=report.log.append)
        stage = FlashStage(link, program.dialect)
        family = _connect(RomStage(link), stage, program, board_type, baud, report, say, show_progress)
        stage.init_flash()
        prepared = [(entry, stage.prepared(entry.wire)) for entry in entries]
        started = time.monotonic()
        for entry, data in prepared:
            with _bytes_bar(f"write {entry.name} @0x{entry.address:06X}", len(data), show_progress) as update:
                report.frames += stage.write(entry.address, data, update)
            report.payload_bytes += len(data)
        report.write_seconds = time.monotonic() - started
        report.verification = _verify(stage, prepared, show_progress)
        if stage.reboot():
            report.reboot = "reboot command acknowledged"
        elif apply_steps(port, family.run_from_flash, family.step_s):
            report.reboot = f"reset through DTR/RTS ({family.name} run-from-flash sequence)"
        else:
            report.reboot = "not rebooted: the port has no DTR/RTS lines; press RESET"
        report.anomalies = link.anomalies
    except (serial.SerialException, OSError) as exc:
        raise IspError(f"the serial connection to the board failed: {exc}", field="--port") from exc
    finally:
        port.close()
    return report


def _connect(rom: RomStage, stage: FlashStage, program: FlashProgram, board_type: str, baud: int,
             report: SessionReport, say: Callable[[str], None], show_progress: bool) -> ResetFamily:
    """Reset into ISP, start the flash-stage program and raise the baud rate; when the line is lost at a rate,
    start over from the reset with the rates below it."""
    rates = baud_candidates(baud)
    for _ in range(len(rates) + 1):
        family = rom.enter_isp(families_for(board_type), say=say)
        report.board_family = family.name
        say(f"ISP mode entered ({family.name} reset sequence); uploading {program.label} "
            f"({len(program.data)} bytes, sha256 {program.sha256[:16]}…, dialect {program.dialect.name})")
        _start_program(rom, stage, program, show_progress)
        try:
            report.baud = stage.raise_baud(rates)
        except BaudLost as lost:
            rates = [rate for rate in rates if rate < lost.rate]
            say(f"{lost}; resetting the board to try {rates[0] if rates else ROM_BAUD} baud")
            continue
        if report.baud != baud:
            say(f"baud rate {baud} failed; using {report.baud}")
        return family
    raise IspError(f"no usable baud rate at or below {baud}")


def _start_program(rom: RomStage, stage: FlashStage, program: FlashProgram, show_progress: bool) -> None:
    """Upload and boot the flash-stage program; when it does not greet but the ROM still does, boot again."""
    with _bytes_bar("upload flash-stage program", len(program.data), show_progress) as update:
        rom.upload(program.data, program.dialect.load_address, update)
    for _ in range(BOOT_ATTEMPTS):
        rom.boot(program.dialect.load_address)
        if stage.greet(5):
            return
        if not rom.greet():
            raise IspError("the flash-stage program does not answer and the ROM no longer does either",
                           expected="a program for this board's dialect (see --isp-prog / --stub-dialect)")
    raise IspError(f"the ROM ignored {BOOT_ATTEMPTS} boot commands")


def _verify(stage: FlashStage, prepared: list[tuple[FlashEntry, bytes]], show_progress: bool) -> str:
    """Read back every entry where the program can; rewrite differing sectors once; never claim what was not done."""
    if not stage.dialect.can_read:
        return (f"unavailable: the {stage.dialect.name} flash-stage program has no read command; every frame was "
                "acknowledged with its CRC-32 checked by the board")
    total = sum(len(data) for _, data in prepared)
    rewritten = 0
    with _bytes_bar("verify", total, show_progress) as update:
        for entry, data in prepared:
            for sector in stage.verify(entry.address, data, update):
                offset = sector - entry.address
                chunk = data[offset:offset + 4096]
                stage.write(sector, chunk)
                if stage.verify(sector, chunk):
                    raise IspError(f"verify failed at 0x{sector:08X} ({entry.name}) even after rewriting it")
                rewritten += 1
    suffix = f" ({rewritten} sectors rewritten after a mismatch)" if rewritten else ""
    return f"read back and compared: {total} bytes match{suffix}"
