"""The fast simulator (the C runtime driven from Python, a batch per process) against the NumPy reference: the same
bytes, shapes and dtypes on the real nncase kmodel, a compiled detector, an embedder and a synthetic model with every
CPU layer, several inputs per batch; each input from a fresh state; clear errors for bad inputs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deploy.firmware import kmodel_runner
from deploy.k210.format import kmodel as km
from deploy.k210.format.kmodel_io import write_kmodel
from deploy.k210.sim.batch import ReferenceSimulator
from deploy.k210.sim.fast import FastSimulator, simulator_for
from deploy.k210.sim.layouts import main_write
from deploy.k210.sim.simulator import simulate
from pipeline.errors import PipelineError
from tests.conftest import shared_path
from tests.kpu_models import conv_layer, detector_net, embedder_kmodel, random_images, synthetic_model, tflite

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def assert_same(fast: list[list[np.ndarray]], reference: list[list[np.ndarray]]) -> None:
    """Per input and output: the same dtype, shape and bytes."""
    assert len(fast) == len(reference)
    for n, (got, want) in enumerate(zip(fast, reference, strict=True)):
        assert len(got) == len(want), f"input {n}: output count"
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            assert (a.dtype, a.shape) == (b.dtype, b.shape), f"input {n} output {i}"
            assert a.tobytes() == b.tobytes(), f"input {n} output {i} differs"


def varied_inputs(rng: np.random.Generator, shape: tuple[int, ...], count: int) -> np.ndarray:
    """Random, blank and saturated inputs: the values that reach every activation segment and clamp."""
    batch = rng.integers(0, 256, (count, *shape), dtype=np.uint8)
    batch[-1] = 255
    batch[-2] = 0
    return batch


@pytest.mark.parametrize("rounding", ["reference", "v0.1"])
def test_real_nncase_kmodel_batch_is_byte_identical(rounding):
    path = shared_path("kmodels", "voc20_yolov2_v3.kmodel")
    dog = np.asarray(Image.open(shared_path("kmodels", "dog.bmp")).convert("RGB")).transpose(2, 0, 1)
    batch = np.concatenate([dog[None], varied_inputs(np.random.default_rng(1), dog.shape, 3)])
    fast = FastSimulator(path, rounding=rounding).run(batch)
    assert_same(fast, [simulate(path, x, rounding=rounding).outputs for x in batch])
    golden = {"reference": "voc20_dog_expected_output.npy", "v0.1": "voc20_dog_expected_output_v01_rounding.npy"}
    assert fast[0][0].tobytes() == np.load(shared_path("kmodels", golden[rounding])).tobytes()
    assert not np.array_equal(fast[0][0], fast[1][0])  # a batch is not one input repeated


@pytest.fixture(scope="module")
def detector_kmodel() -> bytes:
    """A compiled skip_darknet19 detector (passthrough reorg + concat on the CPU), random weights, 160x128."""
    from deploy.k210.compiler.driver import compile_tflite

    net = detector_net("skip_darknet19", width=0.125, size=(160, 128), num_classes=2, seed=3, bn_seed=4,
                       calibration=("random_images(128, 6, seed=2) resized", lambda: [
                           np.asarray(Image.fromarray(i).resize((160, 128))) for i in random_images(128, 6, seed=2)]))
    return compile_tflite(tflite(net)).data


@pytest.mark.parametrize("rounding", ["reference", "v0.1"])  # our tables end in segments at the 36-bit maximum
def test_compiled_detector_batch_is_byte_identical(detector_kmodel, rounding):
    fast = FastSimulator(detector_kmodel, rounding=rounding)
    reference = ReferenceSimulator(detector_kmodel, rounding=rounding)
    batch = varied_inputs(np.random.default_rng(2), fast.input_shape, 4)
    assert_same(fast.run(batch), reference.run(batch))
    deq = fast.dequantized(batch)
    assert_same(deq, reference.dequantized(batch))
    assert deq[0][0].dtype == np.float32


@pytest.fixture(scope="module")
def embedder_path(tmp_path_factory) -> Path:
    """A compiled random-weight MobileFaceNet embedder (112x112, float embedding out)."""
    return embedder_kmodel(tmp_path_factory.mktemp("embedder"))[0]


def test_embedder_batch_is_byte_identical(embedder_path):
    path = embedder_path
    fast, reference = simulator_for(path, fast=True), simulator_for(path, fast=False)
    assert isinstance(fast, FastSimulator) and isinstance(reference, ReferenceSimulator)
    batch = varied_inputs(np.random.default_rng(3), fast.input_shape, 3)
    got, want = fast.run(batch), reference.run(batch)
    assert_same(got, want)
    assert got[0][0].dtype == np.float32  # the embedding leaves the model dequantized, as float32


def test_evaluation_runs_the_kmodel_the_same_on_both_engines(detector_kmodel, embedder_path, tmp_path):
    from deploy.predictors import kmodel_embed, kmodel_predictor

    detector = tmp_path / "detector.kmodel"
    detector.write_bytes(detector_kmodel)
    rng = np.random.default_rng(8)
    images = rng.random((3, 128, 160, 3), dtype=np.float32)
    boxes = {engine: kmodel_predictor(detector, (4, 5, 35), engine)(images) for engine in ("fast", "reference")}
    assert boxes["fast"].shape == (3, 4, 5, 35) and np.array_equal(boxes["fast"], boxes["reference"])
    crops = rng.random((3, 112, 112, 3), dtype=np.float32)
    embeddings = {engine: kmodel_embed(embedder_path, "embed", engine)(crops) for engine in ("fast", "reference")}
    assert embeddings["fast"].shape == (3, 128) and np.array_equal(embeddings["fast"], embeddings["reference"])


def test_the_firmware_row_feeds_the_kmodel_the_firmware_letterbox(detector_kmodel, tmp_path):
    """kmodel_firmware_predictor gives each source image the bytes letterbox_input makes (the C letterbox's twin) and
    says where it put it: the same output as the simulator on those bytes, and the firmware's fitted geometry."""
    from deploy.firmware.camera_frames import letterbox_input
    from deploy.predictors import kmodel_firmware_predictor
    from models.letterbox import letterbox_fit
    from models.yolo_decode import chw_to_hwc

    detector = tmp_path / "detector.kmodel"
    detector.write_bytes(detector_kmodel)
    rng = np.random.default_rng(9)
    sources = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((225, 400, 3), (400, 267, 3), (128, 160, 3))]
    got = kmodel_firmware_predictor(detector, (4, 5, 35), (160, 128))(sources)
    reference = ReferenceSimulator(detector_kmodel)
    for source, (raw, placed) in zip(sources, got, strict=True):
        want = reference.dequantized(letterbox_input(source, (160, 128), 0)[None])[0][0]
        assert np.array_equal(raw, chw_to_hwc(want, 35, 4, 5))
        fit = letterbox_fit((source.shape[1], source.shape[0]), (160, 128))
        assert (placed.pad_x, placed.pad_y) == (fit.pad_x, fit.pad_y)
        assert (placed.scale_x * source.shape[1], placed.scale_y * source.shape[0]) == pytest.approx((fit.width,
                                                                                                      fit.height))


def test_static_layouts_match_what_every_layer_writes():
    rng = np.random.default_rng(5)
    model, _ = synthetic_model(rng)
    traces = simulate(model, rng.integers(0, 256, (3, 24, 72), dtype=np.uint8)).layers
    assert {layer.type for layer in model.layers} >= {km.LayerType.FULLY_CONNECTED, km.LayerType.QUANTIZED_ADD,
                                                      km.LayerType.TENSORFLOW_FLATTEN, km.LayerType.K210_UPLOAD}
    for layer, trace in zip(model.layers, traces, strict=True):
        write = main_write(layer)
        if trace.main_addr is None:
            assert write is None, layer.type
            continue
        assert (write.addr, write.shape, write.dtype) == (trace.main_addr, trace.output.shape, trace.output.dtype)


def test_synthetic_model_with_every_cpu_layer_is_byte_identical():
    rng = np.random.default_rng(6)
    data = write_kmodel(synthetic_model(rng)[0])
    batch = varied_inputs(rng, (3, 24, 72), 3)
    assert_same(FastSimulator(data).run(batch), ReferenceSimulator(data).run(batch))


def test_every_input_of_a_batch_starts_from_a_fresh_state():
    """Layer 1 reads main-buffer bytes that only layer 2 writes: zero on a fresh start, the previous input's values
    if state leaked from one input to the next."""
    rng = np.random.default_rng(7)
    conv, (c, h, w) = conv_layer(rng, (3, 8, 16), 4, kernel_type=1, pool=0, src=100, dst=0, main_out=0)
    n = c * h * w
    stale, out = 1024, 2048
    layers = [conv,
              km.Layer(km.LayerType.QUANTIZED_ADD, km.QuantizedAddBody(0, 0, stale, out, n, 0, 1, 0, 0, 1, 0, 0, 1,
                                                                      1)),
              km.Layer(km.LayerType.REQUANTIZE, km.RequantizeBody(0, 0, stale, n))]
    data = write_kmodel(km.KModel(flags=1, max_start_address=0, main_mem_usage=4096,
                                  outputs=[km.OutputDesc(out, n)], layers=layers))
    batch = varied_inputs(rng, (3, 8, 16), 3)
    fast = FastSimulator(data).run(batch)
    assert_same(fast, ReferenceSimulator(data).run(batch))
    first = simulate(data, batch[0]).layers[0].output.reshape(-1).astype(np.int64)
    assert fast[0][0].tobytes() == np.clip((first + 1) // 2, 0, 255).astype(np.uint8).tobytes()  # (a + 0) / 2


def test_empty_batch_gives_no_outputs():
    assert FastSimulator(shared_path("kmodels", "voc20_yolov2_v3.kmodel")).run(np.zeros((0, 3, 240, 320),
                                                                                        np.uint8)) == []


@pytest.mark.parametrize(("inputs", "got"), [
    (np.zeros((2, 3, 240, 321), np.uint8), r"shape \(2, 3, 240, 321\) and dtype uint8"),
    (np.zeros((3, 240, 320), np.uint8), r"shape \(3, 240, 320\)"),
    (np.zeros((1, 3, 240, 320), np.float32), "dtype float32"),
    ([np.zeros((3, 240, 320), np.uint8)], "inputs are a list")])
@pytest.mark.parametrize("fast", [True, False])
def test_bad_inputs_name_what_was_expected(inputs, got, fast):
    engine = simulator_for(shared_path("kmodels", "voc20_yolov2_v3.kmodel"), fast=fast)
    with pytest.raises(PipelineError, match=got) as error:
        engine.run(inputs)
    assert error.value.field == "inputs" and "N x 3x240x320 of uint8" in error.value.expected


def test_missing_kmodel_and_bad_rounding_are_refused(tmp_path):
    with pytest.raises(PipelineError, match="kmodel file not found"):
        FastSimulator(tmp_path / "none.kmodel")
    with pytest.raises(PipelineError, match="rounding"):
        FastSimulator(shared_path("kmodels", "voc20_yolov2_v3.kmodel"), rounding="nearest")


def test_runner_is_built_once_under_the_build_root(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(tmp_path / "build"))
    first = kmodel_runner.cached_kmodel_runner()
    assert first.is_file() and first.is_relative_to(tmp_path / "build" / "tools")
    stamp = first.stat().st_mtime_ns
    assert kmodel_runner.cached_kmodel_runner() == first and first.stat().st_mtime_ns == stamp
    assert not list(first.parent.parent.glob(".tmp-*"))  # built atomically: no temp folder left


def test_missing_gcc_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_BUILD_ROOT", str(tmp_path / "build"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no gcc on it
    kmodel_runner.runner_key.cache_clear()
    try:
        with pytest.raises(PipelineError, match="gcc not found") as error:
            FastSimulator(shared_path("kmodels", "voc20_yolov2_v3.kmodel"))
        assert "invoke setup" in error.value.expected
    finally:
        kmodel_runner.runner_key.cache_clear()


def test_simulate_task_fast_flag_saves_the_same_npz(tmp_path):
    from invoke import Context

    import tasks

    kmodel, image = shared_path("kmodels", "voc20_yolov2_v3.kmodel"), shared_path("kmodels", "dog.bmp")
    for fast in (False, True):
        tasks.simulate(Context(), kmodel=str(kmodel), image=str(image), out=str(tmp_path / f"{fast}.npz"),
                       rounding="v0.1", fast=fast)
    reference, fast = np.load(tmp_path / "False.npz"), np.load(tmp_path / "True.npz")
    assert sorted(fast.files) == sorted(reference.files) == ["output_0_dequantized", "output_0_raw"]
    for key in reference.files:
        assert fast[key].dtype == reference[key].dtype and fast[key].tobytes() == reference[key].tobytes()
    golden = np.load(shared_path("kmodels", "voc20_dog_expected_output_v01_rounding.npy"))
    assert fast["output_0_raw"].tobytes() == golden.tobytes()


def test_model_starting_with_a_float_fully_connected_takes_float_batches(tmp_path):
    weights = np.array([[1, 2, 0], [-3, 1, 0.5]], np.float32)
    layers = [km.Layer(km.LayerType.FULLY_CONNECTED,
                       km.FullyConnectedBody(0, 0, 16, 3, 2, 1, weights, np.array([0.5, 0], np.float32))),
              km.Layer(km.LayerType.QUANTIZE, km.QuantizeBody(0, 16, 24, 2, 0.5, 0.0))]
    data = write_kmodel(km.KModel(flags=1, max_start_address=0, main_mem_usage=32, outputs=[km.OutputDesc(24, 2)],
                                  layers=layers))
    batch = np.array([[1, 1, 2], [0, 3, -1], [-2, 0, 0]], np.float32)
    fast = FastSimulator(data).run(batch)
    assert_same(fast, ReferenceSimulator(data).run(batch))
    assert fast[0][0].tolist() == [7, 0]  # relu([3.5, -1]) / 0.5
    with pytest.raises(PipelineError, match="dtype uint8"):
        FastSimulator(data).run(batch.astype(np.uint8))
