"""Serial port auto-detection (spec §1.4, §7.2): known USB-UART bridges, and the right interface of two-port
adapters (goE uses the second port, every other board the first)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from serial.tools import list_ports
from serial.tools.list_ports_common import ListPortInfo

from pipeline.errors import PipelineError

BRIDGES = {0x1A86: "WCH CH340", 0x0403: "FTDI / OpenEC / CH552", 0x067B: "Prolific", 0x10C4: "SiLabs CP210x",
           0xC251: "Keil CMSIS-DAP"}
SECOND_INTERFACE_BOARDS = {"goE", "maixduino_openec"}


def _adapter(port: ListPortInfo) -> tuple:
    """Ports of one physical adapter share VID, PID, serial number and USB location (minus the interface)."""
    location = (port.location or "").rsplit(".", 1)[0]
    return port.vid, port.pid, port.serial_number, location


def choose_port(board_type: str = "auto", ports: Sequence[ListPortInfo] | None = None,
                say: Callable[[str], None] = print) -> str:
    """The device path of the port to use; raises PipelineError when no known bridge is connected."""
    ports = list(list_ports.comports() if ports is None else ports)
    known = sorted((p for p in ports if p.vid in BRIDGES), key=lambda p: p.device)
    if not known:
        seen = ", ".join(p.device for p in ports) or "none"
        raise PipelineError(f"no K210 USB-UART bridge found (ports seen: {seen})", field="--port",
                            expected=f"a {', '.join(BRIDGES.values())} adapter, or --port DEVICE|URL")
    adapters: dict[tuple, list[ListPortInfo]] = defaultdict(list)
    for port in known:
        adapters[_adapter(port)].append(port)
    first = next(iter(adapters.values()))
    index = 1 if board_type in SECOND_INTERFACE_BOARDS and len(first) > 1 else 0
    chosen = first[index]
    others = [p.device for p in known if p is not chosen]
    note = f" (also present: {', '.join(others)})" if others else ""
    say(f"port: {chosen.device} [{BRIDGES[chosen.vid]}, interface {index + 1} of {len(first)}]{note}")
    return chosen.device
