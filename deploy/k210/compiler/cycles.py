"""Per-layer K210 time estimate, calibrated on published on-board timings (hardware/k210_timings.json).

A layer's work (`Work`: line-steps, weight bytes, main-memory output, CPU values, input bytes) times the constants in
`CONSTANTS` gives its cycles: `cycles = sum(coefficient * constant)` over `coefficients(work)`. The same linear form
is what deploy/k210/compiler/cycle_fit.py fits to the published timings by relative least squares, so each fitted
constant below is the fit's value (tests/test_k210_cycles.py re-fits and compares). Line-steps (spec §12.3):
rl(W_in) * H_in * ceil(C_in / g(W_in)) * C_out for a normal conv, without C_out for depthwise. KPU cycles run at
KPU_HZ, CPU cycles (CPU layers and the input transfer) at CPU_HZ.

What the data cannot pin (README "K210 time estimates"): the per-layer fixed cost is small but loose (the 16 us
stride-2 depthwise layer of nncase #77 bounds it by ~2.5 k cycles); bit width and kernel size of the weight fetch are
confounded (8-bit weights are seen only in 1x1 layers, 16-bit only in 3x3: 8-bit 3x3 layers are charged the 8-bit
rate, likely pessimistic); main-memory output, dequantize and the input transfer rest on one point each; other CPU
layers have no data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from deploy.k210.compiler.program import KpuStep
from deploy.k210.format import kmodel as km
from hardware.k210 import ACTIVATION_TABLE_BYTES, BN_WORD_BYTES, row_layout

KPU_HZ = 400_000_000  # the clock the estimates are stated at: the Kendryte SDK examples' PLL1 (spec §12.1)
CPU_HZ = 400_000_000

# name -> (cycles per unit, where it comes from). "fit" values are cycle_fit.fit()'s on hardware/k210_timings.json.
CONSTANTS: dict[str, tuple[float, str]] = {
    "line_step": (1.055, "fit: KPU cycles per line-step (spec §12.3's 1.03 from Sipeed forum 691 alone)"),
    "kpu_layer": (657.0, "fit: fixed KPU cycles per layer; small and loosely pinned (the depthwise layers of "
                         "nncase #77 scatter +-50 % around the fit)"),
    "weight8_byte": (1.597, "fit: KPU cycles per byte of 8-bit weights + BN + activation table (nncase #77: "
                            "mostly 1x1 layers)"),
    "weight16_byte": (0.2557, "fit: KPU cycles per byte of 16-bit weights + BN + table (Sipeed forum 691: 3x3)"),
    "main_out_byte": (6.233, "fit, one point: KPU-clock cycles per byte a layer writes to main memory "
                             "(nncase #77's last conv)"),
    "dequantize_value": (17.96, "fit, one point: CPU cycles per dequantized value (nncase #77)"),
    "input_byte": (0.5712, "fit, one point: CPU-clock cycles per input byte moved into KPU RAM (nncase #95: "
                           "329 us for 320x240x3); also charged to K210_UPLOAD layers"),
    "cpu_value": (8.0, "no data: rough RV64 cycles per value other CPU layers touch (spec §12.3 estimate)"),
    "cpu_mac": (4.0, "no data: RV64 float multiply-accumulate cycles (spec §12.3 estimate)"),
    "cpu_layer": (800.0, "no data: fixed cycles per CPU layer (~2 us of dispatch)"),
}
FITTED = ("line_step", "kpu_layer", "weight8_byte", "weight16_byte", "main_out_byte", "dequantize_value",
          "input_byte")
# The fit's error on the published data (cycle_fit.fit() on hardware/k210_timings.json): the estimate's uncertainty.
LAYER_FIT_ERROR = 0.175  # RMS relative error over the 36 fitted layer timings
MODEL_FIT_ERROR = 0.112  # RMS relative error of the 2 published whole-model totals (one fitted, one validation)
CALIBRATION_POINTS = 36  # published layer timings the fit used
CALIBRATION_MODELS = 3  # models (or layer series) they come from


@dataclass(frozen=True)
class Work:
    """What one layer (or the input transfer) does, as the cycle model counts it."""

    unit: str  # "kpu" | "cpu" | "input"
    line_steps: int = 0
    weight_bytes: int = 0
    weight_bits: int = 8
    main_out_bytes: int = 0
    values: int = 0  # CPU layers: values touched; input: bytes moved
    macs: int = 0
    dequantize: bool = False


def line_steps(in_shape: tuple[int, int, int], out_channels: int, depthwise: bool) -> int:
    """KPU line-steps of one layer from its (C, H, W) input (spec §12.3)."""
    channels, height, width = in_shape
    groups, row_len, _ = row_layout(width)
    steps = row_len * height * -(-channels // groups)
    return steps if depthwise else steps * out_channels


def conv_weight_bytes(weights: int, out_channels: int, weight_bits: int) -> int:
    """Weights plus batch-norm words plus the activation table the KPU fetches for one layer."""
    return weights * weight_bits // 8 + BN_WORD_BYTES * out_channels + ACTIVATION_TABLE_BYTES


def kpu_weight_bytes(step: KpuStep) -> int:
    return conv_weight_bytes(int(step.weights.size), step.out_shape[0], step.weight_bits)


def coefficients(work: Work) -> dict[str, float]:
    """The layer's count for each constant of CONSTANTS (the linear form both prediction and fit use)."""
    if work.unit == "input":
        return {"input_byte": work.values}
    if work.unit == "cpu":
        if work.dequantize:
            return {"dequantize_value": work.values}
        return {"cpu_value": work.values, "cpu_mac": work.macs, "cpu_layer": 1}
    weight = "weight8_byte" if work.weight_bits == 8 else "weight16_byte"
    return {"line_step": work.line_steps, "kpu_layer": 1, weight: work.weight_bytes,
            "main_out_byte": work.main_out_bytes}


def cycles(work: Work, constants: dict[str, float] | None = None) -> float:
    """Estimated cycles of one layer (KPU clock for 'kpu', CPU clock otherwise)."""
    values = constants or {name: value for name, (value, _) in CONSTANTS.items()}
    return sum(count * values[name] for name, count in coefficients(work).items())


def seconds(work: Work) -> float:
    return cycles(work) / (KPU_HZ if work.unit == "kpu" else CPU_HZ)


def input_work(in_bytes: int) -> Work:
    return Work("input", values=in_bytes)


def _cpu_work(layer_type: km.LayerType, values: int, macs: int) -> Work:
    if layer_type == km.LayerType.K210_UPLOAD:
        return input_work(values)
    dequantize = layer_type in (km.LayerType.DEQUANTIZE, km.LayerType.CHANNELWISE_DEQUANTIZE)
    return Work("cpu", values=values, macs=macs, dequantize=dequantize)


def _body_values(body: km.Body) -> tuple[int, int]:
    """(values touched, float MACs) of a CPU layer body read from a kmodel."""
    if isinstance(body, km.FullyConnectedBody):
        return body.in_channels + body.out_channels, body.in_channels * body.out_channels
    if isinstance(body, km.ConcatBody):
        return sum(size for _, size in body.inputs), 0
    fields = vars(body)
    for keys in (("count",), ("channels", "channel_size"), ("kernel_size", "channels"),
                 ("in_width", "in_height", "in_channels"), ("in_width", "in_height", "channels"),
                 ("width", "height", "channels"), ("channels",)):
        if all(key in fields for key in keys):
            product = 1
            for key in keys:
                product *= int(fields[key])
            return product, 0
    return 0, 0


def kmodel_works(model: km.KModel) -> list[Work]:
    """The cycle model's view of every layer of a kmodel V3 (ours or nncase's), in order."""
    works = []
    bits = 8 if model.eight_bit_weights else 16
    for layer in model.layers:
        body = layer.body
        if isinstance(body, km.K210ConvBody):
            a = body.args
            main = body.flags & km.FLAG_MAIN_MEM_OUT
            works.append(Work("kpu", line_steps=line_steps(a.in_shape, a.out_channels, bool(a.depth_wise_layer)),
                              weight_bytes=conv_weight_bytes(int(body.weights.size), a.out_channels, bits),
                              weight_bits=bits, main_out_bytes=int(main and _prod(a.out_shape))))
        else:
            values, macs = _body_values(body)
            works.append(_cpu_work(layer.type, values, macs))
    return works


def kmodel_input_bytes(model: km.KModel) -> int:
    """Bytes of the input the runtime uploads to KPU RAM before a first KPU layer (0 if a CPU layer reads it)."""
    first = model.layers[0].body if model.layers else None
    return _prod(first.args.in_shape) if isinstance(first, km.K210ConvBody) else 0


def _prod(shape: tuple[int, ...]) -> int:
    product = 1
    for value in shape:
        product *= int(value)
    return product


@dataclass(frozen=True)
class Estimate:
    """The calibrated time of a whole kmodel: per layer (cycles, unit, us), the input transfer, the total."""

    layers: list[tuple[int, str, float]]
    input_us: float

    @property
    def total_us(self) -> float:
        return self.input_us + sum(us for _, _, us in self.layers)

    @property
    def uncertainty_us(self) -> float:
        return self.total_us * MODEL_FIT_ERROR

    def label(self) -> str:
        return (f"{self.total_us / 1000:.2f} ms +- {self.uncertainty_us / 1000:.2f} ms ({calibration_note()})")


def calibration_note() -> str:
    """How the estimate is made and how far to trust it, in one phrase."""
    return (f"estimate at KPU {KPU_HZ / 1e6:.0f} MHz / CPU {CPU_HZ / 1e6:.0f} MHz, calibrated on "
            f"{CALIBRATION_POINTS} published timings; fit error {MODEL_FIT_ERROR:.0%} per model, "
            f"{LAYER_FIT_ERROR:.0%} per layer")


def calibration() -> dict[str, Any]:
    """The cycle model's constants with their sources and its fit error, for reports."""
    return {"kpu_hz": KPU_HZ, "cpu_hz": CPU_HZ, "published_timings": CALIBRATION_POINTS,
            "models": CALIBRATION_MODELS, "layer_fit_error": LAYER_FIT_ERROR, "model_fit_error": MODEL_FIT_ERROR,
            "data": "hardware/k210_timings.json",
            "constants": {name: {"value": value, "source": source} for name, (value, source) in CONSTANTS.items()}}


def estimate_kmodel(model: km.KModel, *, weight_rate_bits: int | None = None) -> Estimate:
    """The calibrated estimate of one inference of a kmodel V3, input transfer included. `weight_rate_bits` 8
    charges every weight byte at the 8-bit fetch rate: the two fitted rates come from different kernel sizes (see the
    module doc), so a 16-bit kmodel is compared with an 8-bit one both ways."""
    rows = []
    for work in kmodel_works(model):
        if weight_rate_bits is not None and work.unit == "kpu":
            work = dataclasses.replace(work, weight_bits=weight_rate_bits)
        rows.append((int(round(cycles(work))), "kpu" if work.unit == "kpu" else "cpu", seconds(work) * 1e6))
    return Estimate(layers=rows, input_us=seconds(input_work(kmodel_input_bytes(model))) * 1e6)


def kpu_conv_us(in_chw: tuple[int, int, int], out_channels: int, kernel: int, depthwise: bool) -> float:
    """The calibrated estimate of one KPU conv layer (8-bit weights, output kept in KPU RAM), in microseconds: what a
    latency prune target counts."""
    weights = kernel * kernel * in_chw[0] * (1 if depthwise else out_channels)
    work = Work("kpu", line_steps=line_steps(in_chw, out_channels, depthwise),
                weight_bytes=conv_weight_bytes(weights, out_channels, 8))
    return seconds(work) * 1e6
