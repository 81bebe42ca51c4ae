"""DTR/RTS sequences that put a board into ISP mode or run it from flash, per board type (spec §1.2)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import serial

from pipeline.errors import PipelineError

F, T = False, True
Steps = tuple[tuple[bool, bool], ...]  # (DTR, RTS), True = asserted


@dataclass(frozen=True)
class ResetFamily:
    """How one wiring family enters ISP and runs from flash."""

    name: str
    isp_entry: Steps
    run_from_flash: Steps
    step_s: float = 0.1


FAMILIES = {
    # dan-style: RTS -> RESET, DTR -> IO16
    "dan": ResetFamily("dan", ((F, F), (F, T), (T, F)), ((F, F), (F, T), (F, F))),
    # kd233-style: DTR -> RESET, RTS -> IO16
    "kd233": ResetFamily("kd233", ((F, F), (T, F), (F, T)), ((F, F), (T, F), (F, F))),
    "goD": ResetFamily("goD", ((T, T), (T, F), (T, F)), ((F, F), (T, F), (T, T))),
    "generic": ResetFamily("generic", ((F, F), (F, T), (T, F)), ((F, F), (F, T), (F, F)), step_s=0.01),
}
BOARD_FAMILY = {"dan": "dan", "bit": "dan", "trainer": "dan", "kd233": "kd233", "goE": "kd233",
                "maixduino": "kd233", "bit_mic": "kd233", "goD": "goD", "generic": "generic"}
AUTO_ORDER = ("dan", "kd233", "goD", "kd233")  # kflash's order, including its repeated kd233 try
BOARD_TYPES = ("auto", *BOARD_FAMILY)


def families_for(board_type: str) -> tuple[ResetFamily, ...]:
    """The sequences to try for `--board-type` (auto = the kflash auto-detect order)."""
    if board_type == "auto":
        return tuple(FAMILIES[name] for name in AUTO_ORDER)
    if board_type not in BOARD_FAMILY:
        raise PipelineError(f"unknown board type {board_type!r}", field="--board-type",
                            expected=", ".join(BOARD_TYPES))
    return (FAMILIES[BOARD_FAMILY[board_type]],)


def apply_steps(port: serial.SerialBase, steps: Steps, step_s: float) -> bool:
    """Drive DTR/RTS through `steps`; False when the port has no modem lines (a pty), which is not fatal."""
    try:
        for dtr, rts in steps:
            port.dtr = dtr
            port.rts = rts
            time.sleep(step_s)
    except OSError:
        return False
    return True
