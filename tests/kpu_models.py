"""The small KPU test models that the compiler, simulator, C-runtime and firmware tests share: one home for how each is
built, named settings per model (the keras-hub habit of a preset per model) instead of builders copied between test
files.

Two kinds:
- Keras nets exported to uint8 TFLite (`KerasNet`: its layers, the seed of its weights, its BN statistics and its
  calibration images). `tflite(net)` builds, calibrates and converts one through the export stage's
  `export_uint8`, once per process; `embedder_kmodel` also compiles one and writes the compile report; `compare`
  checks a compiled one against LiteRT.
- kmodels written layer by layer (`conv_layer`, the plans of `KPU_PLANS`, `cpu_tail`, `every_body_model`): register
  fields, weights and tables drawn at random, for the runtime and simulator tests that need every pool type, layout
  and CPU layer.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from deploy.k210.compiler.driver import compile_tflite
from deploy.k210.format import kmodel as km
from deploy.k210.format.registers import ActivationTable, BatchNormTable, KpuLayerArgs
from deploy.k210.sim.simulator import simulate
from hardware.k210 import map_lines, row_layout
from models.recognizer.crop import CropPolicy
from tests.conftest import shared_path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

WIDTH, HEIGHT = 64, 48  # the compiler suite's input


# --- calibration and test images ---

def real_images(width: int = WIDTH, height: int = HEIGHT) -> list[np.ndarray]:
    """Real photos (the VOC dog image and 11 face-mask photos) resized bilinearly to the model input, uint8 HWC."""
    paths = [shared_path("kmodels", "dog.bmp")]
    folder = shared_path("facemask", "val", "images")
    paths += sorted(folder.glob("*.jpg"))[:11]
    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(np.asarray(image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)))
    return images


def photo_images(width: int, height: int, count: int = 6) -> list[np.ndarray]:
    """The dog image and the first count - 1 face-mask photos, resized with PIL's default filter, uint8 HWC."""
    paths = [shared_path("kmodels", "dog.bmp")] + sorted(shared_path("facemask", "val", "images").glob("*.jpg"))[
        :count - 1]
    return [np.asarray(Image.open(p).convert("RGB").resize((width, height))) for p in paths]


def random_images(side: int, count: int, seed: int) -> list[np.ndarray]:
    """Seeded uint8 HWC images: smooth random colour fields plus noise (not faces, but spatially varied)."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(0, 1, side)[None, :, None]
    images = []
    for _ in range(count):
        base = rng.uniform(0, 1, 3) + rng.uniform(-1, 1, 3) * grid + rng.uniform(-1, 1, 3) * grid.transpose(1, 0, 2)
        image = 255 * (0.5 * base / 3 + 0.25) + rng.normal(0, 30, (side, side, 3))
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    return images


def noise_images(width: int, height: int, count: int = 4) -> list[np.ndarray]:
    """Uniform random uint8 HWC images, image i from seed i."""
    return [np.random.default_rng(i).integers(0, 256, (height, width, 3), dtype=np.uint8) for i in range(count)]


# --- Keras -> uint8 TFLite ---

def set_bn_statistics(model, seed: int) -> None:
    """Non-trivial BN statistics, so every folded per-channel scale and bias differs."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, channels), rng.normal(0, 0.3, channels),
                               rng.normal(0, 0.2, channels), rng.uniform(0.3, 3, channels)])


def uint8_tflite(model, images: list[np.ndarray]) -> bytes:
    """Full-integer TFLite (int8 inside, uint8 input/output) via the export stage, calibrated on `images` (uint8)."""
    from deploy.tflite import export_uint8

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model_uint8.tflite"
        export_uint8(model, path, [image.astype(np.float32) / 255.0 for image in images])
        return path.read_bytes()


def float_tflite(model) -> bytes:
    """The float32 TFLite of `model` (what the compiler refuses; what the quantize stage starts from)."""
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def litert_outputs(data: bytes, image: np.ndarray) -> list[tuple[np.ndarray, tuple]]:
    """LiteRT's outputs of a uint8 TFLite on one uint8 HWC image: (codes of batch item 0, (scale, zero point)) each,
    in the subgraph output order (which is the kmodel's)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None])
    interpreter.invoke()
    details = interpreter.get_output_details()
    return [(interpreter.get_tensor(d["index"])[0], d["quantization"]) for d in details]


def compare(data: bytes, images: list[np.ndarray], fuse_leaky: bool = False) -> tuple[float, float, list]:
    """A uint8 TFLite compiled and simulated against LiteRT on `images`: (min cosine over outputs of dequantized
    values, fraction of bytes within 1 LSB, layer types)."""
    compiled = compile_tflite(data, fuse_leaky=fuse_leaky)
    cosines, close, total = [], 0, 0
    for image in images:
        result = simulate(compiled.data, image.transpose(2, 0, 1).copy())
        for sim_out, (ref, (scale, zero)) in zip(result.outputs, litert_outputs(data, image), strict=True):
            ref_hwc = ref.astype(np.int64)
            sim = np.asarray(sim_out, np.float64).reshape(-1)
            ours = np.clip(np.round(sim / scale + zero), 0, 255).astype(np.int64)
            if ref_hwc.ndim == 3:  # kmodel outputs are CHW, TFLite NHWC
                ref_hwc = ref_hwc.transpose(2, 0, 1)
            ref_flat = ref_hwc.reshape(-1)
            ref_real = (ref_flat - zero) * scale
            ours_real = (ours - zero) * scale
            denominator = np.linalg.norm(ref_real) * np.linalg.norm(ours_real)
            cosines.append(1.0 if denominator == 0 else float(ref_real @ ours_real / denominator))
            close += int(np.sum(np.abs(ours - ref_flat) <= 1))
            total += ref_flat.size
    return min(cosines), close / total, [layer.type for layer in compiled.model.layers]


@dataclass(frozen=True)
class KerasNet:
    """One small Keras test model: its layers, how its weights are drawn and what calibrates its uint8 export.
    `name` is unique: tflite() keeps one export per name for the process."""

    name: str
    layers: Callable[[], Any]  # -> keras.Model with fresh weights
    calibration: Callable[[], list[np.ndarray]]  # uint8 HWC images of the input size
    seed: int | None = None  # keras.utils.set_random_seed before building; None: the RNG as the caller left it
    bn_seed: int | None = None  # set_bn_statistics(model, bn_seed) after building; None: Keras' initial statistics

    def build(self):
        """The float Keras model, weights drawn as the settings say."""
        import keras

        if self.seed is not None:
            keras.utils.set_random_seed(self.seed)
        model = self.layers()
        if self.bn_seed is not None:
            set_bn_statistics(model, self.bn_seed)
        return model

    def with_settings(self, **changes) -> KerasNet:
        """The same layers with other settings (and a name that says so)."""
        suffix = ",".join(f"{key}={value}" for key, value in sorted(changes.items()))
        return dataclasses.replace(self, name=f"{self.name}[{suffix}]", **changes)


_TFLITE: dict[str, bytes] = {}


def tflite(net: KerasNet) -> bytes:
    """The uint8 TFLite of `net`, built, calibrated and converted once per process."""
    if net.name not in _TFLITE:
        _TFLITE[net.name] = uint8_tflite(net.build(), net.calibration())
    return _TFLITE[net.name]


def _keras():
    import keras

    return keras, keras.layers


# The compiler suite: small nets covering every op the compiler lowers, calibrated on real photos at 64x48.

def conv_chain_layers():
    """conv 3x3 + BN + LeakyReLU + max pool 2x2 s2, conv 1x1 + ReLU, conv 3x3 ReLU6 + max pool 2x2 s1 same,
    conv 3x3 + average pool 2x2 s2."""
    keras, L = _keras()
    inp = keras.Input((HEIGHT, WIDTH, 3))
    x = L.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = L.LeakyReLU(0.1)(x)
    x = L.MaxPooling2D(2)(x)
    x = L.Conv2D(12, 1, activation="relu")(x)
    x = L.Conv2D(16, 3, padding="same", activation="relu6")(x)
    x = L.MaxPooling2D(2, strides=1, padding="same")(x)
    x = L.Conv2D(8, 3, padding="same")(x)
    x = L.AveragePooling2D(2)(x)
    return keras.Model(inp, x)


def strides_layers():
    """stride 2: ZeroPadding + VALID 3x3, TF 'same' 3x3 (even size), depthwise 3x3 and stride-2 depthwise."""
    keras, L = _keras()
    inp = keras.Input((HEIGHT, WIDTH, 3))
    x = L.ZeroPadding2D(1)(inp)
    x = L.Conv2D(8, 3, strides=2, padding="valid", activation="relu")(x)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = L.Conv2D(16, 3, strides=2, padding="same")(x)
    x = L.LeakyReLU(0.2)(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="same")(x)
    x = L.Conv2D(16, 1, activation="relu")(x)
    x = L.Conv2D(16, 1, strides=1)(x)
    return keras.Model(inp, x)


def passthrough_layers():
    """DarkNet19-style passthrough: SPACE_TO_DEPTH concatenated with a deeper branch (adjacent-memory concat),
    plus a residual ADD and a concat that is also a model output (CPU concat, uploaded for the next conv)."""
    import tensorflow as tf

    keras, L = _keras()
    inp = keras.Input((HEIGHT, WIDTH, 3))
    a = L.Conv2D(16, 3, padding="same", activation="relu")(inp)
    a = L.MaxPooling2D(2)(a)
    b = L.Conv2D(16, 3, padding="same")(a)
    b = L.LeakyReLU(0.1)(b)
    b = L.Add()([a, b])
    s = L.Lambda(lambda v: tf.nn.space_to_depth(v, 2))(a)
    d = L.MaxPooling2D(2)(b)
    d = L.Conv2D(32, 3, padding="same", activation="relu")(d)
    x = L.Concatenate()([d, s])
    x = L.Conv2D(16, 1, activation="relu")(x)
    y = L.Conv2D(8, 1)(x)
    z = L.Concatenate()([x, y])  # also a model output: a CPU concat into main memory
    return keras.Model(inp, [L.Conv2D(10, 3, padding="same")(z), z])


def classifier_layers():
    """Head ops: max pool 3x3 s2 (CPU), GAP (MEAN), Dense + softmax; and Flatten + Dense as a second output."""
    keras, L = _keras()
    inp = keras.Input((HEIGHT, WIDTH, 3))
    x = L.Conv2D(16, 3, padding="same", activation="relu")(inp)
    x = L.MaxPooling2D(3, strides=2, padding="same")(x)
    x = L.Conv2D(24, 3, padding="same", activation="relu")(x)
    x = L.MaxPooling2D(2)(x)
    g = L.GlobalAveragePooling2D()(x)
    p = L.Dense(10)(g)
    p = L.Softmax()(p)
    f = L.Conv2D(4, 1, activation="relu")(x)
    f = L.Flatten()(f)
    f = L.Dense(6, activation="relu")(f)
    return keras.Model(inp, [p, f])


# Seeded once for the four, built in this order (each draws its weights after the previous): the compiled bytes of
# test_k210_compile's recorded hashes come from exactly this sequence.
COMPILER_SUITE_SEED = 20261122
COMPILER_SUITE = {name: KerasNet(f"compiler/{name}", layers, real_images, bn_seed=1) for name, layers in (
    ("conv_chain", conv_chain_layers), ("strides", strides_layers), ("passthrough", passthrough_layers),
    ("classifier", classifier_layers))}


def compiler_suite() -> dict[str, bytes]:
    """name -> uint8 TFLite of each net of COMPILER_SUITE, in its recorded build sequence."""
    import keras

    if any(net.name not in _TFLITE for net in COMPILER_SUITE.values()):
        keras.utils.set_random_seed(COMPILER_SUITE_SEED)
        for net in COMPILER_SUITE.values():
            _TFLITE[net.name] = uint8_tflite(net.build(), net.calibration())
    return {name: _TFLITE[net.name] for name, net in COMPILER_SUITE.items()}


def _single_conv(height: int, width: int, kernel: int, padding: str = "same"):
    keras, L = _keras()
    inp = keras.Input((height, width, 3))
    return keras.Model(inp, L.Conv2D(4, kernel, padding=padding)(inp))


def _wide_conv_layers():
    keras, L = _keras()
    inp = keras.Input((16, 16, 3))
    x = L.Conv2D(512, 3, padding="same", activation="relu")(inp)
    x = L.MaxPooling2D(2)(x)
    x = L.Conv2D(512, 3, padding="same")(x)
    x = L.LeakyReLU(0.1)(x)
    y = L.Dense(4)(L.GlobalAveragePooling2D()(x))
    return keras.Model(inp, [x, y])


def _odd_stride_layers():
    keras, L = _keras()
    inp = keras.Input((13, 13, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    x = L.ZeroPadding2D(1)(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="valid")(x)
    x = L.LeakyReLU(0.1)(x)
    return keras.Model(inp, L.Conv2D(8, 1)(x))


def _small_embedder_layers():
    keras, L = _keras()
    inp = keras.Input((16, 16, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(inp)
    x = L.ReLU()(L.BatchNormalization()(x))
    x = L.BatchNormalization()(L.Conv2D(4, 1, use_bias=False)(x))  # like head_reduce
    return keras.Model(inp, L.Dense(16, name="embedding")(L.Flatten()(x)))


def _kpu_fc_layers():
    keras, L = _keras()
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(12, 3, padding="same", activation="relu")(inp)
    return keras.Model(inp, L.Dense(40, activation="relu")(L.Flatten()(x)))


def _fuzz_layers():
    keras, L = _keras()
    inp = keras.Input((16, 16, 3))
    x = L.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = L.MaxPooling2D(2)(x)
    x = L.Conv2D(4, 1)(x)
    x = L.LeakyReLU(0.1)(x)
    return keras.Model(inp, x)


def _mixed_kpu_layers():
    keras, L = _keras()
    inp = keras.Input((32, 32, 3))
    x = L.Conv2D(16, 3, padding="same", use_bias=False)(inp)
    x = L.LeakyReLU(0.1)(L.BatchNormalization()(x))
    x = L.MaxPooling2D(2)(x)
    x = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)))
    x = L.Conv2D(24, 1, activation="relu6")(x)
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    return keras.Model(inp, L.Dense(10)(L.Flatten()(x)))


def _stage_detector_layers():
    keras, L = _keras()
    inp = keras.Input((24, 32, 3))
    x = L.Conv2D(8, 3, padding="same")(inp)
    x = L.LeakyReLU(0.1)(x)
    x = L.MaxPooling2D(2)(x)
    x = L.MaxPooling2D(2)(x)
    return keras.Model(inp, L.Conv2D(2 * 6, 1)(x))


# 512 -> 512 3x3: 86 weight loads, sliced over output channels.
WIDE_CONV = KerasNet("wide_conv", _wide_conv_layers, lambda: real_images(16, 16))
# A 5x5 kernel (the KPU has 1x1 and 3x3 only).
CONV_5X5 = KerasNet("conv_5x5", lambda: _single_conv(HEIGHT, WIDTH, 5), lambda: real_images()[:2])
# A 300-row map (the KPU's limit is 256).
TALL_MAP = KerasNet("tall_map", lambda: _single_conv(300, WIDTH, 3),
                    lambda: [np.zeros((300, WIDTH, 3), np.uint8)])
# A float model (what the compiler refuses).
FLOAT_CONV = KerasNet("float_conv", lambda: _single_conv(HEIGHT, WIDTH, 3, "valid"), lambda: [])
# 13x13 -> 3x3 s2 'same' conv (odd: 7x7) -> 3x3 s2 depthwise on 7x7 + LeakyReLU (4x4) -> 1x1 conv.
ODD_STRIDE = KerasNet("odd_stride", _odd_stride_layers, lambda: random_images(13, 6, seed=2), seed=4)
# conv s2 + BN + ReLU, a BN'd 1x1 conv like head_reduce, Flatten + Dense 16: an embedder in miniature.
SMALL_EMBEDDER = KerasNet("small_embedder", _small_embedder_layers, lambda: random_images(16, 4, seed=1), seed=5,
                          bn_seed=3)
# conv 3x3 + Flatten + Dense 40: the FC that runs on the KPU in the 4x4-padded form.
KPU_FC = KerasNet("kpu_fc", _kpu_fc_layers, lambda: random_images(8, 6, seed=3), seed=6)
# conv + max pool + 1x1 conv + LeakyReLU at 16x16: the fuzzer's valid TFLite and kmodel.
FUZZ_NET = KerasNet("fuzz", _fuzz_layers, lambda: noise_images(16, 16), seed=20261122)
# conv + LeakyReLU + two max pools + a 12-channel 1x1 head at 32x24 (an 8x6 grid of 2 anchors, 1 class).
STAGE_DETECTOR = KerasNet("stage_detector", _stage_detector_layers, lambda: noise_images(32, 24), seed=3)


# Conv + BN + LeakyReLU (its own KPU layer), max pool, depthwise + BN + ReLU, 1x1 ReLU6, 3x3 stride-2 'same' (a
# one-hot decimation layer), Flatten + Dense 10 on the KPU: every KPU layer kind, for 16-bit weights.
MIXED_KPU = KerasNet("mixed_kpu", _mixed_kpu_layers, lambda: random_images(32, 6, seed=7), seed=8, bn_seed=9)

_PAIRS: dict[str, tuple[bytes, bytes]] = {}


def tflite_pair(net: KerasNet) -> tuple[bytes, bytes]:
    """(uint8 TFLite, float TFLite) of one build of `net`: the float model that was quantized, as the export stage's
    model_quantized_float.tflite is to its model_uint8.tflite (the source of 16-bit kmodel weights)."""
    if net.name not in _PAIRS:
        model = net.build()
        _PAIRS[net.name] = (uint8_tflite(model, net.calibration()), float_tflite(model))
    return _PAIRS[net.name]


# The project's own model families with random weights.

def detector_net(family: str, *, width: float, size: tuple[int, int], num_classes: int, seed: int,
                 bn_seed: int | None = None, output_stride: int | None = None, num_anchors: int | None = 5,
                 anchors: list | None = None,
                 calibration: tuple[str, Callable[[], list[np.ndarray]]] | None = None) -> KerasNet:
    """models.yolo_head.build_detector's `family` at `width` for a `size` (w, h) input; calibrated on real_images
    unless `calibration` (its name, its images) is given. `num_anchors`/`output_stride` None: left out of the
    config (the family's default)."""

    def layers():
        from models.yolo_head import build_detector

        cfg = {"family": family, "width": width, "input_size": list(size)}
        if num_anchors is not None:
            cfg["num_anchors"] = num_anchors
        cfg["anchors"] = anchors
        if output_stride is not None:
            cfg["output_stride"] = output_stride
        return build_detector(cfg, num_classes)

    images_name, images = calibration or ("real_images", lambda: real_images(*size))
    settings = dict(family=family, width=width, size=size, num_classes=num_classes, seed=seed, bn_seed=bn_seed,
                    output_stride=output_stride, num_anchors=num_anchors, anchors=anchors, calibration=images_name)
    return KerasNet("detector[" + ",".join(f"{k}={v}" for k, v in settings.items()) + "]", layers, images, seed=seed,
                    bn_seed=bn_seed)


# The recognizer's embedders: width 0.125, a 128-value embedding over a 32-channel head.
EMBEDDING, HEAD_CHANNELS = 128, 32
EMBEDDER_SIDE = 112
EMBEDDER_MARGIN_PERMILLE = CropPolicy(EMBEDDER_SIDE).margin_permille


def embedder_config(family: str, side: int) -> dict:
    return {"family": family, "width": 0.125, "input_size": [side, side], "min_channels": 8, "activation": "leaky"}


def embedder_net(family: str, side: int) -> KerasNet:
    """models.recognizer.embedder.build_embedder's `family` for a side x side crop, seeded weights and BN
    statistics, calibrated on 8 random colour fields."""

    def layers():
        from models.recognizer.embedder import build_embedder

        return build_embedder(embedder_config(family, side), EMBEDDING, HEAD_CHANNELS)

    return KerasNet(f"embedder/{family}/{side}", layers, lambda: random_images(side, 8, seed=5), seed=7, bn_seed=11)


def embedder_meta(side: int = EMBEDDER_SIDE) -> dict[str, Any]:
    """The model_meta.json fields of a recognizer that the firmware reads."""
    return {"task": "recognizer", "family": "mobilefacenet", "width": 0.125, "input_size": [side, side],
            "embedding_size": EMBEDDING, "crop_margin_permille": EMBEDDER_MARGIN_PERMILLE}


def embedder_kmodel(folder: Path, side: int = EMBEDDER_SIDE, centre: np.ndarray | None = None, flip: bool = False
                    ) -> tuple[Path, dict[str, Any]]:
    """folder/model.kmodel and folder/compile_report.json of a random-weight embedder (the w0.125 MobileFaceNet,
    exported and compiled, no training), with the compile report `invoke compile` would write beside it (with the
    embedding `centre` when given, and the flip policy); returns the path and report."""
    from deploy.k210.compiler.compile_report import build_report
    from deploy.k210.compiler.driver import compile_tflite

    folder.mkdir(parents=True, exist_ok=True)
    compiled = compile_tflite(tflite(embedder_net("mobilefacenet", side)))
    report = build_report(compiled, source=folder / "model_uint8.tflite", budget_mib=1.0, meta=embedder_meta(side),
                          centre=centre, flip=flip)
    kmodel = folder / "model.kmodel"
    kmodel.write_bytes(compiled.data)
    (folder / "compile_report.json").write_text(json.dumps(report))
    return kmodel, report


# --- kmodels written layer by layer ---

POOL_STRIDES = {0: 1, 8: 1, 9: 1, 1: 2, 2: 2, 5: 2, 6: 2, 3: 4, 4: 4, 7: 4}


def conv_layer(rng, in_shape, out_c, *, kernel_type, pool, src, dst, depthwise=False, main_out=None, sixteen=False,
               monotone=False) -> tuple[km.Layer, tuple[int, int, int]]:
    """A K210_CONV layer on a C x H x W map at KPU RAM line `src`, writing line `dst` (and main memory at
    `main_out`), random arithmetic fields, weights (8 or 16 bit), BN and a 15-segment activation (one rising ramp
    when `monotone`, so the runtime may max-pool before activating); with its output shape."""
    c, h, w = in_shape
    stride = POOL_STRIDES[pool]
    oh, ow = h // stride, w // stride
    g_in, rl_in, _ = row_layout(w)
    g_out, rl_out, _ = row_layout(ow)
    shr_x = int(rng.integers(0, 4))
    args = KpuLayerArgs(
        depth_wise_layer=int(depthwise), image_src_addr=src, image_dst_addr=dst, i_ch_num=c - 1, o_ch_num=out_c - 1,
        o_ch_num_coef=out_c - 1, i_row_wid=w - 1, i_col_high=h - 1, o_row_wid=ow - 1, o_col_high=oh - 1,
        kernel_type=kernel_type, pool_type=pool, pad_value=int(rng.integers(0, 256)),
        channel_switch_addr=rl_in * h, row_switch_addr=rl_in, coef_group=g_in,
        wb_channel_switch_addr=rl_out * oh, wb_row_switch_addr=rl_out, wb_group=g_out,
        shr_x=shr_x, arg_x=int(rng.integers(-200, 0)) << shr_x, shr_w=2, arg_w=-int(rng.integers(0, 999)),
        arg_add=int(rng.integers(-5000, 5000)), channel_byte_num=oh * ow - 1, dma_total_byte=out_c * oh * ow - 1)
    args.para_size = args.weight_count() * (2 if sixteen else 1)
    top = 65536 if sixteen else 256
    weights = rng.integers(0, top, args.weight_count()).astype(np.uint16 if sixteen else np.uint8)
    bn = BatchNormTable(mul=rng.integers(1, 1 << (4 if sixteen else 10), out_c),
                        add=rng.integers(-(1 << 16), 1 << 16, out_c), shift=np.full(out_c, 15))
    starts = [int(v) for v in np.linspace(-(1 << 17), 1 << 17, 15)]  # 15 rising segments, random slopes
    table = ActivationTable(x_start=[-(1 << 35)] + starts, y_mul=[int(v) for v in rng.integers(16, 256, 16)],
                            shift=[int(v) for v in rng.integers(13, 16, 16)], bias=list(range(0, 256, 16)))
    if monotone:
        table = ActivationTable(x_start=[-(1 << 35)] + starts, y_mul=[0] + [1] * 15, shift=[0] + [11] * 15,
                                bias=[0] + [int(v) for v in np.linspace(0, 240, 15)])
    body = km.K210ConvBody(flags=int(main_out is not None), main_mem_out_addr=main_out or 0, args=args,
                           weights=weights, bn=bn, activation=table)
    return km.Layer(km.LayerType.K210_CONV, body), (out_c, oh, ow)


@dataclass(frozen=True)
class KpuPlan:
    """A chain of KPU conv layers: the input map and, per layer, (output channels, kernel_type, pool_type,
    depthwise, monotone activation)."""

    input_shape: tuple[int, int, int]
    layers: tuple[tuple[int, int, int, bool, bool], ...]


KPU_PLANS = {
    # every pool type, KPU layouts with 1, 2 and 4 channels per line, depthwise
    "all_pools": KpuPlan((3, 24, 72), ((8, 1, 1, False, False), (8, 1, 0, True, False), (6, 0, 9, False, False),
                                       (5, 1, 8, False, False), (4, 0, 5, False, False), (4, 1, 6, False, False),
                                       (6, 1, 2, False, False), (6, 0, 0, False, False))),
    # the stride-4 pools and max pools after monotone activations (which the runtime may pool first)
    "pool_before_activation": KpuPlan((3, 128, 128), ((8, 1, 7, False, False), (8, 0, 3, False, True),
                                                      (6, 1, 9, False, True), (6, 1, 1, False, True))),
}


def kpu_chain(rng, sixteen: bool, plan_name: str) -> tuple[list[km.Layer], tuple[int, int, int]]:
    """The plan's conv layers ping-ponging between the top and bottom of KPU RAM, ending with a main-memory output
    at 0; with the last output shape."""
    plan = KPU_PLANS[plan_name]
    shape = plan.input_shape
    layers = []
    top = 32768 - map_lines(*shape)
    for index, (out_c, kernel_type, pool, depthwise, monotone) in enumerate(plan.layers):
        src, dst = (top, 0) if index % 2 == 0 else (0, top)
        last = index == len(plan.layers) - 1
        layer, shape = conv_layer(rng, shape, out_c, kernel_type=kernel_type, pool=pool, src=src, dst=dst,
                                  depthwise=depthwise, main_out=0 if last else None, sixteen=sixteen,
                                  monotone=monotone)
        layers.append(layer)
    return layers, shape


def cpu_tail(shape) -> tuple[list[km.Layer], list[km.OutputDesc]]:
    """Every CPU layer the runtime executes, on a KPU output (u8 at main offset 0, C x H x W), exact in float32 and
    integer arithmetic; with the model outputs."""
    c, h, w = shape
    n, t, f32 = c * h * w, km.LayerType, np.float32
    layers = [
        km.Layer(t.QUANTIZED_ADD, km.QuantizedAddBody(0, 0, 0, 512, n, -3, 1 << 20, 20, 4, 3 << 18, 18, 7, 5, 2)),
        km.Layer(t.REQUANTIZE, km.RequantizeBody(0, 512, 1024, n, np.arange(255, -1, -1, dtype=np.uint8))),
        km.Layer(t.QUANTIZED_MAX_POOL2D, km.Pool2dBody(0, 1024, 1536, w, h, c, w // 2, h // 2, c, 3, 3, 2, 2, 1, 1)),
        km.Layer(t.QUANTIZED_AVERAGE_POOL2D, km.Pool2dBody(0, 1024, 1600, w, h, c, w // 2, h // 2, c, 3, 3, 2, 2, 1,
                                                            1)),
        km.Layer(t.QUANTIZED_GLOBAL_AVERAGE_POOL2D, km.GlobalPoolBody(0, 1024, 1700, h * w, c)),
        km.Layer(t.QUANTIZED_GLOBAL_MAX_POOL2D, km.GlobalPoolBody(0, 1024, 1716, h * w, c)),
        km.Layer(t.QUANTIZED_TENSORFLOW_FLATTEN, km.FlattenBody(0, 1024, 1800, w, h, c)),
        km.Layer(t.QUANTIZED_RESIZE_NEAREST_NEIGHBOR, km.ResizeNearestBody(0, 1024, 2048, w, h, c, 2 * w - 3,
                                                                           h + 1, 0)),
        km.Layer(t.QUANTIZED_CONCAT, km.ConcatBody(0, 3072, 2, [(1700, 6), (1716, 6)])),
        km.Layer(t.DEQUANTIZE, km.QuantizeBody(0, 1024, 4096, n, 0.25, -3.5)),
        km.Layer(t.CHANNELWISE_DEQUANTIZE, km.ChannelwiseDequantizeBody(0, 512, 6144, c, h * w,
                                                                        np.linspace(0.1, 2, c).astype(f32),
                                                                        np.linspace(-1, 1, c).astype(f32))),
        km.Layer(t.ADD, km.AddBody(0, 4096, 6144, 8192, n)),
        km.Layer(t.AVERAGE_POOL2D, km.FloatPool2dBody(0, 8192, 10240, w, h, c, w // 2, h // 2, c, 3, 3, 2, 2, 1,
                                                      1, act=2)),
        km.Layer(t.MAX_POOL2D, km.FloatPool2dBody(0, 8192, 11264, w, h, c, w // 2, h // 2, c, 3, 3, 2, 2, 1, 1,
                                                  act=2)),
        km.Layer(t.GLOBAL_AVERAGE_POOL2D, km.GlobalPoolBody(0, 8192, 12288, h * w, c)),
        km.Layer(t.GLOBAL_MAX_POOL2D, km.GlobalPoolBody(0, 8192, 12352, h * w, c)),
        km.Layer(t.FULLY_CONNECTED, km.FullyConnectedBody(0, 12288, 12416, c, 5, 1,
                                                          np.linspace(-1, 1, 5 * c).astype(f32).reshape(5, c),
                                                          np.array([0.5, -0.5, 0.25, 0, 1], f32))),
        km.Layer(t.TENSORFLOW_FLATTEN, km.FlattenBody(0, 8192, 12544, w, h, c)),
        km.Layer(t.RESIZE_NEAREST_NEIGHBOR, km.ResizeNearestBody(0, 8192, 14592, w, h, c, w + 5, 2 * h, 0)),
        km.Layer(t.QUANTIZE, km.QuantizeBody(0, 8192, 20480, n, 0.125, -8.0)),
        km.Layer(t.K210_ADD_PADDING, km.AddPaddingBody(0, 20480, 100, 6)),
        km.Layer(t.K210_REMOVE_PADDING, km.RemovePaddingBody(0, 20480, 22000, 6)),
        km.Layer(t.K210_UPLOAD, km.UploadBody(0, 20480, 200, w, h, c)),
    ]
    outputs = [km.OutputDesc(512, 2 * n), km.OutputDesc(1536, 2 * n), km.OutputDesc(4096, 20480 - 4096 + n),
               km.OutputDesc(22000, 6)]
    return layers, outputs


def synthetic_model(rng, plan_name: str = "all_pools", sixteen: bool = False) -> tuple[km.KModel, int]:
    """A plan's KPU chain and the tail of every CPU layer as one kmodel; with how many of its layers are the KPU's."""
    kpu_layers, shape = kpu_chain(rng, sixteen, plan_name)
    tail, outputs = cpu_tail(shape)
    return km.KModel(flags=0 if sixteen else 1, max_start_address=0, main_mem_usage=24576, outputs=outputs,
                     layers=kpu_layers + tail), len(kpu_layers)


def conv_body(depthwise: bool) -> km.K210ConvBody:
    """A 4-channel 8x8 3x3 conv body with extreme BN values (for the file format)."""
    args = KpuLayerArgs(depth_wise_layer=int(depthwise), i_ch_num=3, o_ch_num=3, kernel_type=1, i_row_wid=7,
                        i_col_high=7, o_row_wid=7, o_col_high=7, arg_x=-128, arg_add=-5 << 30)
    rng = np.random.default_rng(1)
    weights = rng.integers(0, 256, args.weight_count(), dtype=np.uint8)
    bn = BatchNormTable(mul=np.array([1, -2, 3, -(1 << 23)]), add=np.array([-(1 << 31), 5, 6, 7]),
                        shift=np.array([0, 15, 3, 9]))
    table = ActivationTable(x_start=[-(1 << 35)] + list(range(-7, 8)), y_mul=list(range(16)),
                            shift=list(range(16)), bias=list(range(0, 256, 16)))
    return km.K210ConvBody(flags=1, main_mem_out_addr=64, args=args, weights=weights, bn=bn, activation=table)


def every_body_model() -> km.KModel:
    """A model holding one layer of every V3 body type (for round trips, inspection and fuzzing)."""
    T = km.LayerType
    f32 = np.float32
    layers = [
        km.Layer(T.K210_CONV, conv_body(False)),
        km.Layer(T.K210_CONV, conv_body(True)),
        km.Layer(T.ADD, km.AddBody(0, 0, 16, 32, 4)),
        km.Layer(T.QUANTIZED_ADD, km.QuantizedAddBody(0, 0, 8, 16, 8, -3, 1 << 20, 20, 4, 3, 21, 7, 5, 2)),
        km.Layer(T.GLOBAL_AVERAGE_POOL2D, km.GlobalPoolBody(0, 0, 64, 16, 2)),
        km.Layer(T.QUANTIZED_MAX_POOL2D, km.Pool2dBody(0, 0, 64, 4, 4, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0)),
        km.Layer(T.AVERAGE_POOL2D, km.FloatPool2dBody(0, 0, 64, 4, 4, 1, 2, 2, 1, 3, 3, 2, 2, 1, 1, act=2)),
        km.Layer(T.QUANTIZE, km.QuantizeBody(0, 0, 64, 8, 0.5, -1.25)),
        km.Layer(T.DEQUANTIZE, km.QuantizeBody(0, 0, 64, 8, 0.25, 3.0)),
        km.Layer(T.REQUANTIZE, km.RequantizeBody(0, 0, 64, 8, np.arange(255, -1, -1, dtype=np.uint8))),
        km.Layer(T.SOFTMAX, km.ChannelsBody(0, 0, 64, 5)),
        km.Layer(T.CONCAT, km.ConcatBody(0, 96, 2, [(0, 16), (32, 8)])),
        km.Layer(T.FULLY_CONNECTED, km.FullyConnectedBody(0, 0, 64, 3, 2, 1, np.arange(6, dtype=f32).reshape(2, 3),
                                                          np.array([0.5, -0.5], f32))),
        km.Layer(T.TENSORFLOW_FLATTEN, km.FlattenBody(0, 0, 64, 2, 2, 3)),
        km.Layer(T.QUANTIZED_RESIZE_NEAREST_NEIGHBOR, km.ResizeNearestBody(0, 0, 64, 2, 2, 3, 4, 4, 0)),
        km.Layer(T.CHANNELWISE_DEQUANTIZE, km.ChannelwiseDequantizeBody(0, 0, 64, 2, 3, np.array([1, 2], f32),
                                                                        np.array([-1, 1], f32))),
        km.Layer(T.K210_ADD_PADDING, km.AddPaddingBody(0, 0, 10, 5)),
        km.Layer(T.K210_REMOVE_PADDING, km.RemovePaddingBody(0, 0, 64, 5)),
        km.Layer(T.K210_UPLOAD, km.UploadBody(0, 0, 20, 8, 8, 3)),
    ]
    return km.KModel(flags=1, max_start_address=10, main_mem_usage=256, outputs=[km.OutputDesc(64, 32)],
                     layers=layers)
