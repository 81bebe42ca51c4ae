"""How `invoke flash` reaches a board, by the flash transport the board registry gives it
(deploy/firmware/boards.py): a serial port (given, or found among the known USB-UART bridges) or the simulated K210
started on a flash image (the one place the flasher's side starts the simulated board)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from deploy.isp.ports import choose_port
from deploy.isp.simboard.options import SimOptions
from deploy.isp.simboard.process import running_simboard

SERIAL, SIMULATED = "serial", "simulated"  # the values of BoardSpec.flash_transport


@contextlib.contextmanager
def board_port(transport: str, port: str | None, board_type: str, flash_image: Path,
               sim_options: SimOptions | None, say: Callable[[str], None]) -> Iterator[str]:
    """The port URL of a board reached by `transport`: `port` when given, else the simulated board on
    `flash_image` (SIMULATED) or a serial bridge found for `board_type` (SERIAL)."""
    if port:
        yield port
    elif transport == SIMULATED:
        with running_simboard(flash_image, sim_options) as url:
            say(f"simulated K210 at {url}, flash image {flash_image}")
            yield url
    else:
        yield choose_port(board_type, say=say)
