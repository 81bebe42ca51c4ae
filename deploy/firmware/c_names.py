"""Turn pipeline names and values into safe C: identifiers, string literals and float literals."""

from __future__ import annotations

import json
import math
import re

from pipeline.errors import PipelineError

# rt_ai keeps names in a 16-byte field; RT-AK advises <= 15 characters so the name stays NUL-terminated.
MAX_MODEL_NAME = 15

C_KEYWORDS = frozenset((
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else", "enum", "extern",
    "float", "for", "goto", "if", "inline", "int", "long", "register", "restrict", "return", "short", "signed",
    "sizeof", "static", "struct", "switch", "typedef", "union", "unsigned", "void", "volatile", "while", "_Bool",
    "_Complex", "_Imaginary", "_Alignas", "_Alignof", "_Atomic", "_Generic", "_Noreturn", "_Static_assert",
    "_Thread_local",
))


def c_identifier(name: str, *, field: str = "name") -> str:
    """A valid C identifier for `name`: other characters become '_', a leading digit gets a '_' prefix.

    Refuses (PipelineError) a name with no letter or digit left, or one that is a C keyword."""
    text = re.sub(r"[^A-Za-z0-9_]", "_", str(name).strip())
    if not re.search(r"[A-Za-z0-9]", text):
        raise PipelineError(f"{name!r} has no letter or digit to build a C identifier from", field=field,
                            expected="a name with letters or digits, e.g. face_detect")
    if text[0].isdigit():
        text = "_" + text
    if text in C_KEYWORDS:
        raise PipelineError(f"{name!r} is a C keyword", field=field, expected="a name that is not a C keyword")
    return text


def model_identifier(name: str) -> str:
    """The C name of a model: a lower-case identifier of at most MAX_MODEL_NAME characters, or PipelineError."""
    ident = c_identifier(name, field="firmware.name").lower()
    if len(ident) > MAX_MODEL_NAME:
        raise PipelineError(f"model name {name!r} becomes {ident!r} ({len(ident)} characters)", field="firmware.name",
                            expected=f"at most {MAX_MODEL_NAME} characters (rt_ai's name field)")
    return ident


def unique_identifiers(names: list[str], *, prefix: str, field: str) -> list[str]:
    """Upper-case identifiers `PREFIX_NAME`, one per name, made unique with _2, _3 ... suffixes."""
    seen: set[str] = set()
    result = []
    for index, name in enumerate(names):
        base = f"{prefix}_{c_identifier(name, field=f'{field}[{index}]').upper()}"
        ident, n = base, 2
        while ident in seen:
            ident, n = f"{base}_{n}", n + 1
        seen.add(ident)
        result.append(ident)
    return result


def c_string(text: str) -> str:
    """A C string literal holding `text` (UTF-8); quotes, backslashes and non-printables are escaped as octal."""
    out = []
    for byte in str(text).encode("utf-8"):
        if byte in (0x22, 0x5C):
            out.append("\\" + chr(byte))
        elif 0x20 <= byte < 0x7F and byte != 0x3F:  # '?' escaped too: no trigraphs
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def c_json_string(text: str) -> str:
    """A C string literal whose content is `text` escaped for use inside a JSON string."""
    return c_string(json.dumps(str(text), ensure_ascii=True)[1:-1])


def c_float(value: float) -> str:
    """A C float literal that rounds to the same float32 as `value`, or PipelineError for inf/nan."""
    value = float(value)
    if not math.isfinite(value):
        raise PipelineError(f"value {value} cannot be written as a C float", expected="a finite number")
    text = repr(value)
    if "e" not in text and "." not in text:
        text += ".0"
    return text + "f"
