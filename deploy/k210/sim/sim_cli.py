"""`invoke simulate`: load an input (image resized to the model input, or an exact-shape .npy; a .npy of floats for
a model whose first layer is a float FULLY_CONNECTED on the CPU), run the simulator (the NumPy reference, or with
--fast the C runtime: the same bytes), save every output raw and dequantized to an .npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from deploy.k210.format.kmodel_io import load_kmodel
from deploy.k210.sim.fast import FastSimulator
from deploy.k210.sim.simulator import SimResult, dequantize_outputs, model_input_shape, simulate
from pipeline.atomic import atomic_path
from pipeline.errors import PipelineError


def load_model_input(path: Path, shape: tuple[int, ...], dtype: np.dtype = np.dtype(np.uint8)) -> np.ndarray:
    """The model input of `shape` and `dtype`. uint8 CHW: a .npy used as is (exact shape, uint8), or an image
    converted to RGB (or grayscale for 1 channel) and resized to the model's width x height. float32 (a model that
    starts on the CPU): a .npy of floats of exactly that shape."""
    path = Path(path)
    if np.dtype(dtype) == np.float32:
        return _float_input(path, shape)
    if not path.is_file():
        raise PipelineError("input file not found", path=path, expected="an image or a .npy file")
    if path.suffix.lower() == ".npy":
        array = _read_npy(path)
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


def _float_input(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    expected = f"a .npy of {int(np.prod(shape))} floats, shape {shape} (the first layer's float32 input)"
    if not path.is_file():
        raise PipelineError("input file not found", path=path, expected=expected)
    if path.suffix.lower() != ".npy":
        raise PipelineError("the model's first layer runs on the CPU with float input, not on an image", path=path,
                            expected=expected)
    array = _read_npy(path)
    if array.shape != shape or not np.issubdtype(array.dtype, np.floating):
        raise PipelineError(f"array has shape {array.shape} dtype {array.dtype}", path=path, expected=expected)
    return array.astype(np.float32)


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise PipelineError(f"not a readable .npy: {exc}", path=path) from None


def save_outputs(result: SimResult, out: Path) -> None:
    """output_<i>_raw and output_<i>_dequantized arrays in one .npz, written atomically."""
    arrays = {}
    for index, (raw, deq) in enumerate(zip(result.outputs, result.dequantized, strict=True)):
        arrays[f"output_{index}_raw"] = raw
        arrays[f"output_{index}_dequantized"] = deq
    with atomic_path(out) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def run_simulation(kmodel: Path, image: Path, out: Path | None, rounding: str = "reference",
                   fast: bool = False) -> SimResult:
    """Simulate one input (`fast`: on the C runtime, the same outputs without the per-layer trace) and (when `out` is
    given) save its outputs; prints a summary."""
    if out is not None and (Path(out).is_dir() or Path(out).parent.is_file()):
        raise PipelineError("is a folder" if Path(out).is_dir() else "its parent is a file", path=out, field="--out",
                            expected="the path of an .npz file to write")
    model = load_kmodel(kmodel)
    shape, dtype = model_input_shape(model)
    model_input = load_model_input(Path(image), shape, dtype)
    if fast:
        outputs = FastSimulator(kmodel, rounding=rounding).run(model_input[None])[0]
        result = SimResult(outputs=outputs, dequantized=dequantize_outputs(outputs))
    else:
        result = simulate(model, model_input, rounding=rounding)
    for index, raw in enumerate(result.outputs):
        print(f"output[{index}]: {raw.dtype} {tuple(raw.shape)}  min {raw.min()} max {raw.max()}")
    if out is not None:
        save_outputs(result, Path(out))
        print(f"saved {len(result.outputs)} outputs (raw + dequantized) to {out}")
    return result
