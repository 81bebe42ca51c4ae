"""The msh console of RT-Thread running in QEMU, driven as a person types at it: wait for the prompt, type a line,
read what it printed up to the next prompt."""

from __future__ import annotations

import time

import pexpect

from pipeline.errors import PipelineError

PROMPT = "msh />"
FAULT = "Dump Registers"  # what RT-Thread's RISC-V trap handler prints before it stops
NOT_FOUND = "command not found"
BOOT_TIMEOUT_S = 60.0
FAULT_TAIL_S = 1.0


class MshConsole:
    """One QEMU process with RT-Thread on its serial console (stdio); closed (killed) on exit."""

    def __init__(self, command: list[str], *, what: str, boot_timeout: float = BOOT_TIMEOUT_S):
        self.command = command
        self.what = what
        self.boot_timeout = boot_timeout
        self.transcript = ""
        self.boot_seconds = 0.0
        self._child: pexpect.spawn | None = None

    def __enter__(self) -> MshConsole:
        start = time.monotonic()
        try:
            self._child = pexpect.spawn(self.command[0], self.command[1:], encoding="utf-8",
                                        codec_errors="replace", echo=False)
        except pexpect.ExceptionPexpect as exc:
            raise PipelineError(f"cannot start {self.command[0]}: {exc}") from None
        self._until_prompt(self.boot_timeout, "booting to the msh prompt")
        self.boot_seconds = time.monotonic() - start
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._child is not None:
            self._child.terminate(force=True)
            self._child = None

    def _until_prompt(self, timeout: float, doing: str) -> str:
        child = self._child
        assert child is not None
        index = child.expect_exact([PROMPT, FAULT, pexpect.EOF, pexpect.TIMEOUT], timeout=timeout)
        if index == 1:  # let the register dump finish, so the error shows it
            child.expect([pexpect.EOF, pexpect.TIMEOUT], timeout=FAULT_TAIL_S)
        text = (child.before or "") + (child.after if isinstance(child.after, str) else "")
        self.transcript += text
        if index != 0:
            problem = {1: "faulted", 2: "exited", 3: f"did not reach the msh prompt within {timeout:.0f} s"}[index]
            tail = self.transcript[-3000:].replace("\r", "")
            raise PipelineError(f"{self.what} {problem} while {doing}:\n{tail}")
        return (child.before or "").replace("\r", "")

    def run(self, line: str, timeout: float) -> str:
        """Type `line` and return what the command printed (PipelineError when msh does not know it)."""
        assert self._child is not None
        self._child.send(line + "\r")
        printed = self._until_prompt(timeout, f"running `{line}`")
        lines = printed.split("\n")
        body = "\n".join(lines[1:] if lines and lines[0].strip().endswith(line) else lines)
        if f"{line.split()[0]}: {NOT_FOUND}" in body:
            raise PipelineError(f"{self.what}: {line.split()[0]}: {NOT_FOUND}",
                                expected="an msh command the firmware registers (type `help` on its console)")
        return body

    def run_until(self, line: str, marker: str, timeout: float) -> str:
        """Type `line` and wait until it prints `marker` (not the prompt: a command that never returns, such as a
        save stopped by a power-cut test hook); what it printed so far."""
        assert self._child is not None
        self._child.send(line + "\r")
        index = self._child.expect_exact([marker, PROMPT, pexpect.EOF, pexpect.TIMEOUT], timeout=timeout)
        text = (self._child.before or "") + (self._child.after if isinstance(self._child.after, str) else "")
        self.transcript += text
        if index != 0:
            raise PipelineError(f"{self.what} did not print {marker!r} while running `{line}`:\n"
                                f"{self.transcript[-2000:]}")
        return text.replace("\r", "")


def msh_commands(help_text: str) -> list[str]:
    """The command names `help` lists (lines `name - description`)."""
    return [line.split()[0] for line in help_text.splitlines() if " - " in line and line.split()]
