"""Reading text files a person wrote (configs, label and list files): UTF-8, with an error naming the file."""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import PipelineError


def read_utf8(path: Path, *, expected: str = "a UTF-8 text file") -> str:
    """The text of `path`; PipelineError naming the file when it is not UTF-8, is a folder or cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PipelineError(f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})",
                            path=path, expected=expected) from None
    except IsADirectoryError:
        raise PipelineError("is a folder, not a file", path=path, expected=expected) from None
    except OSError as exc:
        raise PipelineError(f"cannot read: {exc.strerror}", path=path, expected=expected) from None
