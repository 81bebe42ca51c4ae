"""The simulated board behind an RFC 2217 server on 127.0.0.1 (pyserial's PortManager does the Telnet side): it sees
every DTR/RTS change, baud change and byte in order, paces bytes at the line rate, and injects faults."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from serial.rfc2217 import PortManager

from deploy.isp import slip
from deploy.isp.packet import parse_request
from deploy.isp.simboard.device import ROM_BAUD, Board, Emit, State
from deploy.isp.simboard.faults import Faults
from deploy.isp.simboard.flash_memory import FlashMemory
from deploy.isp.simboard.options import SimOptions

LOOPBACK = "127.0.0.1"
POLL_S = 0.05
MAX_RECV = 65536


class _Events:
    """Data bytes and control changes in the order the client sent them."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._data = bytearray()

    def data(self, chunk: bytes) -> None:
        self._data += chunk

    def control(self, kind: str, value: Any) -> None:
        self._flush()
        self.items.append((kind, value))

    def _flush(self) -> None:
        if self._data:
            self.items.append(bytes(self._data))
            self._data.clear()

    def take(self, filtered: Iterable[bytes]) -> list[Any]:
        for byte in filtered:
            self._data += byte
        self._flush()
        items, self.items = self.items, []
        return items


def _modem_line(name: str) -> property:
    """A DTR/RTS attribute whose every change becomes a ("lines", (dtr, rts)) event."""

    def get(port: SimPort) -> bool:
        return getattr(port, f"_{name}")

    def put(port: SimPort, value: bool) -> None:
        setattr(port, f"_{name}", bool(value))
        port._events.control("lines", (port._dtr, port._rts))

    return property(get, put)


class SimPort:
    """The serial-port face that PortManager drives: settings are stored, line and baud changes become events."""

    def __init__(self, events: _Events) -> None:
        self._events = events
        self._baud = ROM_BAUD
        self._dtr = False
        self._rts = False
        self.bytesize, self.parity, self.stopbits = 8, "N", 1
        self.xonxoff = self.rtscts = self.break_condition = False
        self.cts = self.dsr = self.ri = self.cd = False

    @property
    def baudrate(self) -> int:
        return self._baud

    @baudrate.setter
    def baudrate(self, value: int) -> None:
        self._baud = int(value)
        self._events.control("baud", self._baud)

    dtr = _modem_line("dtr")
    rts = _modem_line("rts")

    def reset_input_buffer(self) -> None:
        """Nothing is buffered on the board side."""

    def reset_output_buffer(self) -> None:
        """Nothing is buffered on the board side."""


def _same_rate(a: int, b: int) -> bool:
    return abs(a - b) <= 0.03 * b


class _Writer:
    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn

    def write(self, data: bytes) -> None:
        self.conn.sendall(data)


class SimBoardServer:
    def __init__(self, flash_path: Path, options: SimOptions) -> None:
        self.options = options
        self.faults = Faults(options.faults)
        self.board = Board(FlashMemory(flash_path), options, self.faults)
        self._log = open(options.log, "a") if options.log else None  # noqa: SIM115 - closed in serve()
        self._started = time.monotonic()

    def log(self, **record: Any) -> None:
        if self._log is not None:
            self._log.write(json.dumps({"t": round(time.monotonic() - self._started, 6), **record}) + "\n")
            self._log.flush()

    def serve(self, announce: Callable[[str], None] = print) -> str:
        """Listen on 127.0.0.1, serve one client at a time, stop on idle timeout or lifetime; returns why it stopped."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, self.options.port))
        listener.listen(1)
        listener.settimeout(POLL_S * 4)
        announce(f"rfc2217://{LOOPBACK}:{listener.getsockname()[1]}")
        last_activity = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                if now - self._started > self.options.max_lifetime_s:
                    return "lifetime reached"
                if now - last_activity > self.options.idle_timeout_s:
                    return "idle timeout"
                try:
                    conn, _peer = listener.accept()
                except TimeoutError:
                    continue
                with conn:
                    self._session(conn)
                last_activity = time.monotonic()
        finally:
            listener.close()
            self.board.flash.close()
            if self._log is not None:
                self._log.close()

    def _session(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(POLL_S)
        events = _Events()
        manager = PortManager(SimPort(events), _Writer(conn))
        decoder = slip.SlipDecoder()
        host_baud = ROM_BAUD
        line_free = time.monotonic()
        last_data = time.monotonic()
        self.log(event="connect")
        while time.monotonic() - last_data < self.options.idle_timeout_s and \
                time.monotonic() - self._started < self.options.max_lifetime_s:
            try:
                data = conn.recv(MAX_RECV)
            except TimeoutError:
                self._send(conn, self.board.tick(time.monotonic()), host_baud, reply=False)
                continue
            except OSError:
                break
            if not data:
                break
            now = last_data = time.monotonic()
            for item in events.take(manager.filter(data)):
                if isinstance(item, tuple) and item[0] == "baud":
                    host_baud = item[1]
                    self.log(event="baud", host=host_baud, device=self.board.baud)
                elif isinstance(item, tuple):
                    emits = self.board.set_lines(*item[1], time.monotonic())
                    self.log(event="lines", dtr=item[1][0], rts=item[1][1], state=self.board.state.value)
                    if self.board.state == State.RESET:
                        decoder.reset()
                    self._send(conn, emits, host_baud, reply=False)
                else:
                    if self.options.pace_line:
                        line_free = max(line_free, now) + len(item) * 10 / host_baud
                        time.sleep(max(0.0, line_free - time.monotonic()))
                    if not self._frames(conn, decoder, item, host_baud):
                        self.log(event="disconnect (injected)")
                        return
        self.log(event="close")

    def _line_ok(self, host_baud: int, device_baud: int) -> bool:
        """Bytes survive only when both ends use the same rate and the bridge can carry it."""
        limit = self.options.max_baud
        return _same_rate(host_baud, device_baud) and not (limit and host_baud > limit)

    def _frames(self, conn: socket.socket, decoder: slip.SlipDecoder, data: bytes, host_baud: int) -> bool:
        """Feed line bytes to the board; False when an injected disconnect happened."""
        if not self._line_ok(host_baud, self.board.baud):
            data = self.faults.corrupt(data, 1.0)
        data = self.faults.corrupt(data, self.options.corrupt_in)
        for frame in decoder.feed(data):
            if not frame.valid:
                self.log(state=self.board.state.value, note="bad SLIP frame dropped", size=len(frame.payload))
                continue
            state = self.board.state.value
            received = time.monotonic()
            emits, note = self.board.handle(frame.payload, received)
            if self.faults.count_frame():
                return False
            self._send(conn, emits, host_baud, reply=True)
            self.log(state=state, op=f"{frame.payload[0]:02X}", size=len(frame.payload), note=note,
                     address=parse_request(frame.payload).address, host_baud=host_baud,
                     t_rx=round(received - self._started, 6))
        return True

    def _send(self, conn: socket.socket, emits: list[Emit], host_baud: int, reply: bool) -> None:
        for emit in emits:
            if reply and self.faults.drop():
                self.log(note="reply dropped (injected)")
                continue
            time.sleep(emit.after_s + self.options.reply_latency_s + (self.faults.stall() if reply else 0.0))
            wire = emit.wire if self._line_ok(host_baud, emit.baud) else self.faults.corrupt(emit.wire, 1.0)
            wire = self.faults.corrupt((self.faults.junk() if reply else b"") + wire, self.options.corrupt_out)
            if self.options.pace_line:
                time.sleep(len(wire) * 10 / emit.baud)
            try:
                conn.sendall(wire.replace(b"\xff", b"\xff\xff"))  # Telnet IAC escaping (PortManager.escape)
            except OSError:
                return


def serve_simboard(flash_path: Path, options: SimOptions, announce: Callable[[str], None] = print) -> str:
    """Run the simulated board in this process until it is idle; returns why it stopped."""
    return SimBoardServer(Path(flash_path), options).serve(announce)
