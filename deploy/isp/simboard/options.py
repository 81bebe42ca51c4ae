"""Every knob of the simulated board in one dataclass, which also defines its command line (one flag per field)."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

from deploy.isp.simboard.faults import FaultConfig
from pipeline.values import Rule, choice, count, fraction, number

HELP = {
    "port": "TCP port on 127.0.0.1 (0 = any free port; the URL is printed on the first line)",
    "wiring": "which line drives RESET: dan (RTS->RESET, DTR->IO16) or kd233 (DTR->RESET, RTS->IO16)",
    "personality": "flash-stage dialect for uploaded programs the board does not recognise: vowstar, sipeed, ktool",
    "pace_line": "model the line rate (10 bits per byte at the current baud); off = as fast as possible",
    "reply_latency_s": "USB latency added before every reply",
    "boot_delay_s": "time from C5 (boot) until the uploaded program answers",
    "boot_sample_s": "time from RESET release until the ROM samples IO16 (pyserial acknowledges each RFC 2217 line "
                     "change ~50 ms after the last)",
    "page_program_s": "flash program time per 256-byte page",
    "sector_erase_s": "flash erase time per 4 KiB sector",
    "block_erase_s": "flash erase time per 64 KiB block",
    "chip_erase_s": "whole-chip erase time",
    "d6_reply": "answer to the baud-rate command: none, old (at the old rate), new (at the new rate)",
    "max_baud": "highest rate the USB bridge carries (0 = any); faster lines turn to garbage",
    "sipeed_reboot": "sipeed personality's answer to D5: e3 (refuse) or ok (acknowledge and reset)",
    "idle_timeout_s": "stop when no client is connected and nothing happened for this long",
    "max_lifetime_s": "stop after this long in any case",
    "log": "append a JSON line per frame to this file",
    "corrupt_in": "probability that a byte from the host is corrupted",
    "corrupt_out": "probability that a byte to the host is corrupted",
    "drop_reply": "probability that a reply is dropped",
    "stall_rate": "probability that a reply is delayed by --stall-s",
    "stall_s": "length of an injected stall",
    "busy_replies": "answer this many flash writes with E7 (busy) first",
    "disconnect_after": "drop the connection after this many frames (0 = never)",
    "junk_rate": "probability of random line noise (END bytes included) before a reply",
    "wrong_greetings": "answer this many ROM greetings with a wrong op, like a running application",
    "seed": "seed of the fault generator",
}


@dataclass(frozen=True)
class SimOptions:
    port: int = 0
    wiring: str = "dan"
    personality: str = "vowstar"
    pace_line: bool = True
    reply_latency_s: float = 0.001
    boot_delay_s: float = 0.02
    boot_sample_s: float = 0.12
    page_program_s: float = 0.0007
    sector_erase_s: float = 0.045
    block_erase_s: float = 0.15
    chip_erase_s: float = 2.0
    d6_reply: str = "none"
    max_baud: int = 0
    sipeed_reboot: str = "e3"
    idle_timeout_s: float = 60.0
    max_lifetime_s: float = 3600.0
    log: str = ""
    corrupt_in: float = 0.0
    corrupt_out: float = 0.0
    drop_reply: float = 0.0
    stall_rate: float = 0.0
    stall_s: float = 0.0
    busy_replies: int = 0
    disconnect_after: int = 0
    junk_rate: float = 0.0
    wrong_greetings: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            RULES[field.name].check(getattr(self, field.name), field=f"--{field.name.replace('_', '-')}")

    @classmethod
    def from_text(cls, **given: object) -> SimOptions:
        """Options from command-line text (None: the default), each parsed and checked by its rule."""
        return cls(**{name: RULES[name].parse(value, field=f"--{name.replace('_', '-')}")
                      for name, value in given.items() if value is not None})

    @property
    def faults(self) -> FaultConfig:
        names = {f.name for f in dataclasses.fields(FaultConfig)}
        return FaultConfig(**{name: getattr(self, name) for name in names})

    def fast(self) -> SimOptions:
        """The same board with no modelled time at all (unit tests)."""
        return dataclasses.replace(self, pace_line=False, reply_latency_s=0.0, boot_delay_s=0.0, page_program_s=0.0,
                                   sector_erase_s=0.0, block_erase_s=0.0, chip_erase_s=0.0)

    def as_args(self) -> list[str]:
        """Command-line flags that reproduce these options (only those that differ from the defaults)."""
        args = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value != field.default:
                args += [f"--{field.name.replace('_', '-')}", str(value)]
        return args


CHOICES = {"wiring": ("dan", "kd233"), "personality": ("vowstar", "sipeed", "ktool"),
           "d6_reply": ("none", "old", "new"), "sipeed_reboot": ("e3", "ok")}
SECONDS = number(0, unit="seconds")
# The type and range of every option (checked when SimOptions is made, from any front end)
RULES: dict[str, Rule] = {
    "port": Rule("int", low=0, high=65535, unit="TCP port, 0 = any free port"), "pace_line": Rule("bool"),
    **{name: choice(names) for name, names in CHOICES.items()},
    **{name: SECONDS for name in ("reply_latency_s", "boot_delay_s", "boot_sample_s", "page_program_s",
                                  "sector_erase_s", "block_erase_s", "chip_erase_s", "stall_s")},
    "idle_timeout_s": number(0, open_low=True, unit="seconds"),
    "max_lifetime_s": number(0, open_low=True, unit="seconds"),
    "max_baud": count(0, "baud, 0 = any"), "log": Rule("str"),
    **{name: fraction() for name in ("corrupt_in", "corrupt_out", "drop_reply", "stall_rate", "junk_rate")},
    "busy_replies": count(0), "disconnect_after": count(0, "frames, 0 = never"), "wrong_greetings": count(0),
    "seed": count(0),
}


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="python -m deploy.isp.simboard", description=__doc__)
    parse.add_argument("--flash", required=True, help="the 16 MiB flash image file (created 0xFF when missing)")
    for field in dataclasses.fields(SimOptions):
        kind = _bool if field.type == "bool" else {"int": int, "float": float}.get(field.type, str)
        parse.add_argument(f"--{field.name.replace('_', '-')}", dest=field.name, type=kind, default=field.default,
                           choices=CHOICES.get(field.name), help=HELP[field.name])
    return parse


def from_namespace(namespace: argparse.Namespace) -> SimOptions:
    return SimOptions(**{field.name: getattr(namespace, field.name) for field in dataclasses.fields(SimOptions)})
