"""`invoke simulate`: load an input (image resized to the model input, or an exact-shape .npy), run the simulator,
save every output raw and dequantized to an .npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from deploy.k210.kmodel_io import load_kmodel
from deploy.k210.sim import SimResult, model_input_shape, simulate
from pipeline.atomic import atomic_path
from pipeline.errors import PipelineError


def load_model_input(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A uint8 CHW input of `shape`: a .npy used as is (exact shape, uint8), or an image converted to RGB (or
    grayscale for 1 channel) and resized to the model's width x height."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError("input file not found", path=path, expected="an image or a .npy file")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise PipelineError(f"not a readable .npy: {exc}", path=path) from None
        if array.shape != shape or array.dtype != np.uint8:
            raise PipelineError(f"array has shape {array.shape} dtype {array.dtype}", path=path,
                                expected=f"uint8 CHW of shape {shape}")
        return array
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise PipelineError(f"the model input {shape} is not an image", path=path,
                            expected="a .npy of exactly the model input shape")
    channels, height, width = shape
    try:
        with Image.open(path) as image:
            image = image.convert("RGB" if channels == 3 else "L")
            if image.size != (width, height):
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise PipelineError(f"not a readable image: {exc}", path=path) from None
    return pixels.reshape(height, width, channels).transpose(2, 0, 1).copy()


def save_outputs(result: SimResult, out: Path) -> None:
    """output_<i>_raw and output_<i>_dequantized arrays in one .npz, written atomically."""
    arrays = {}
    for index, (raw, deq) in enumerate(zip(result.outputs, result.dequantized, strict=True)):
        arrays[f"output_{index}_raw"] = raw
        arrays[f"output_{index}_dequantized"] = deq
    with atomic_path(out) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def run_simulation(kmodel: Path, image: Path, out: Path | None, rounding: str = "reference") -> SimResult:
    """Simulate one input and (when `out` is given) save its outputs; prints a summary."""
    if out is not None and (Path(out).is_dir() or Path(out).parent.is_file()):
        raise PipelineError("is a folder" if Path(out).is_dir() else "its parent is a file", path=out, field="--out",
                            expected="the path of an .npz file to write")
    model = load_kmodel(kmodel)
    shape, _ = model_input_shape(model)
    if len(shape) != 3:
        raise PipelineError(f"model input is {shape} float32", path=kmodel,
                            expected="a model whose first layer is K210_CONV (uint8 CHW input)")
    result = simulate(model, load_model_input(Path(image), shape), rounding=rounding)
    for index, raw in enumerate(result.outputs):
        print(f"output[{index}]: {raw.dtype} {tuple(raw.shape)}  min {raw.min()} max {raw.max()}")
    if out is not None:
        save_outputs(result, Path(out))
        print(f"saved {len(result.outputs)} outputs (raw + dequantized) to {out}")
    return result
