"""Stage 1, the boot ROM's ISP (115200 baud): reset into ISP, strict greeting, upload the flash-stage program into
SRAM in 1 KiB frames (retrying the same address), boot it."""

from __future__ import annotations

import time
from collections.abc import Callable

from deploy.isp.frames import write_in_frames
from deploy.isp.link import IspError, IspLink
from deploy.isp.packet import Op, Reason, request, short_request
from deploy.isp.reset import ResetFamily, apply_steps

ROM_BAUD = 115200
ROM_FRAME = 1024


class RomStage:
    def __init__(self, link: IspLink) -> None:
        self.link = link

    def greet(self) -> bool:
        """Send NOP (C2, 13-byte form) and require exactly [C2, E0] within the greeting timeout (other frames, such
        as an application's output, are not taken as a greeting)."""
        self.link.discard_input()
        self.link.send(short_request(Op.ROM_NOP))
        deadline = time.monotonic() + self.link.timing.greeting_s
        while (reply := self.link.next_reply(deadline)) is not None:
            if reply.op == Op.ROM_NOP and reply.reason == Reason.OK and not reply.body:
                return True
            self.link.log(f"greeting: ignored reply {reply.describe()}")
        return False

    def enter_isp(self, families: tuple[ResetFamily, ...], say: Callable[[str], None] = print) -> ResetFamily:
        """Try each reset sequence until the ROM greets; returns the family that worked. On a port without modem
        lines (a pty) the user is asked once to reset the board by hand while the greetings go on."""
        lines_work, told = True, False
        rounds = self.link.timing.greeting_rounds
        for _ in range(rounds):
            for family in families:
                lines_work = apply_steps(self.link.port, family.isp_entry, family.step_s) and lines_work
                if self.greet():
                    return family
            if not lines_work and not told:
                told = True
                say("this port has no DTR/RTS lines: hold BOOT (IO16) low and press RESET on the board")
        raise IspError(f"no ROM greeting [C2, E0] after {rounds} rounds of "
                       f"{', '.join(f.name for f in families)} reset sequences",
                       expected="a K210 in ISP mode (check --port and --board-type, or hold BOOT and press RESET)")

    def upload(self, program: bytes, address: int, progress: Callable[[int], None] | None = None) -> None:
        """Write `program` into SRAM with C3 frames; every frame must be acknowledged before the next."""
        write_in_frames(self.link, Op.ROM_MEMORY_WRITE, address, program, max_frame=ROM_FRAME, min_frame=32,
                        attempts=32, what="stub upload", ok_reasons=(Reason.OK, Reason.DEFAULT), progress=progress)

    def boot(self, address: int) -> None:
        """C5 to the entry point: the ROM jumps without replying."""
        self.link.send(request(Op.ROM_MEMORY_BOOT, address))
        self.link.port.flush()
        time.sleep(self.link.timing.boot_wait_s)
