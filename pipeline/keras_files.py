"""The one Keras model loader: a saved .keras file, in Keras's safe mode (no arbitrary code), not compiled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError


def load_keras(path: Path, custom_objects: dict[str, Any] | None = None,
               expected: str = "run `invoke train` first"):
    """The model in `path`; a PipelineError naming the file when it is missing or unreadable. Custom layers are
    found by their registration (import the module that defines them) or through `custom_objects`."""
    import keras

    if not Path(path).is_file():
        raise PipelineError("model file not found", path=path, expected=expected)
    try:
        return keras.models.load_model(path, compile=False, custom_objects=custom_objects)
    except (ValueError, OSError, TypeError) as exc:
        raise PipelineError(f"cannot load the Keras model ({exc})", path=path) from exc
