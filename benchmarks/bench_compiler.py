"""K210 compiler and simulator: compile time of a ~1.4 MB DarkNet-style uint8 model (goal <= 5 s), simulator
frames/s at 320x256 (reference and v0.1 rounding) with LiteRT on the same TFLite as the baseline, and peak
Python memory (tracemalloc) of each."""

from __future__ import annotations

import os
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from deploy.k210.compiler.driver import compile_tflite
from deploy.k210.sim.simulator import simulate
from deploy.tflite import export_uint8

WIDTH, HEIGHT = 320, 256
COMPILE_GOAL_S = 5.0
REPEATS = 3


def darknet_like_tflite() -> bytes:
    """A YOLOv2-style detector (3x3 conv + BN + LeakyReLU + max pool stages, 1x1 head), about 1.4 MB of int8."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    keras.utils.set_random_seed(20261122)
    layers = keras.layers
    inp = keras.Input((HEIGHT, WIDTH, 3))
    x = inp
    for index, channels in enumerate((16, 32, 64, 128, 256, 384)):
        x = layers.Conv2D(channels, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.LeakyReLU(0.1)(x)
        if index < 5:
            x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(384, 1, activation="relu")(x)
    x = layers.Conv2D(30, 1)(x)
    model = keras.Model(inp, x)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model_uint8.tflite"
        export_uint8(model, path, [rng.random((HEIGHT, WIDTH, 3), dtype=np.float32) for _ in range(8)])
        return path.read_bytes()


def _timed(fn, repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return float(np.median(times)), result


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _litert_seconds(data: bytes, image: np.ndarray, repeats: int) -> float:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data, num_threads=1)
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]

    def once() -> None:
        interpreter.set_tensor(index, image[None])
        interpreter.invoke()

    once()
    return _timed(once, repeats)[0]


def run(out_dir: Path) -> dict[str, Any]:
    data = darknet_like_tflite()
    compile_s, compiled = _timed(lambda: compile_tflite(data), REPEATS)
    image = np.random.default_rng(1).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    chw = image.transpose(2, 0, 1).copy()
    sim_s, _ = _timed(lambda: simulate(compiled.model, chw), REPEATS)
    sim_v01_s, _ = _timed(lambda: simulate(compiled.model, chw, rounding="v0.1"), REPEATS)
    litert_s = _litert_seconds(data, image, 10)
    return {
        "model": {"tflite_bytes": len(data), "kmodel_bytes": len(compiled.data),
                  "layers": len(compiled.model.layers), "input": [WIDTH, HEIGHT]},
        "compile": {"seconds": round(compile_s, 3), "goal_s": COMPILE_GOAL_S,
                    "ratio_to_goal": round(compile_s / COMPILE_GOAL_S, 3),
                    "peak_python_bytes": _peak_bytes(lambda: compile_tflite(data))},
        "simulator": {"frames_per_s": round(1 / sim_s, 2), "frames_per_s_v01": round(1 / sim_v01_s, 2),
                      "peak_python_bytes": _peak_bytes(lambda: simulate(compiled.model, chw)),
                      "litert_frames_per_s_1_thread": round(1 / litert_s, 1),
                      "ratio_to_litert": round(litert_s / sim_s, 4)},
        "process_max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
