"""The lowered program between TFLite and kmodel: uint8/float tensors with their KPU-side quantization, and a
list of KPU and CPU steps in execution order. Addresses are assigned later by `memory_plan`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from deploy.k210.compiler.kpu_params import ConvArithmetic, Quant
from deploy.k210.format.kmodel import Body, LayerType


@dataclass
class LTensor:
    name: str
    shape: tuple[int, int, int]  # (C, H, W); vectors are (N, 1, 1)
    dtype: str  # "u8" | "f32"
    quant: Quant | None = None
    kpu_parent: tuple[str, int] | None = None  # (concat tensor, channel offset) when stored inside another map

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) * (4 if self.dtype == "f32" else 1)


class Addresses(Protocol):
    def main(self, tensor: str) -> int: ...

    def kpu(self, tensor: str) -> int: ...


@dataclass
class KpuStep:
    source: str  # the TFLite op(s) it implements, for reports and errors
    input: str
    output: str
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    kernel: int
    depthwise: bool
    pool_type: int
    weights: np.ndarray  # uint8 (or uint16 in 16-bit mode), flat OIHW (or C k k)
    arithmetic: ConvArithmetic
    main_out: bool = False

    @property
    def inputs(self) -> list[str]:
        return [self.input]

    @property
    def layer_type(self) -> LayerType:
        return LayerType.K210_CONV

    @property
    def weight_bits(self) -> int:
        """8 (uint8 weights) or 16 (uint16)."""
        return 8 * self.weights.dtype.itemsize

    @property
    def macs(self) -> int:
        c, h, w = self.in_shape
        per_pixel = self.kernel ** 2 * (1 if self.depthwise else c)
        return per_pixel * self.out_shape[0] * h * w


@dataclass
class CpuStep:
    source: str
    layer_type: LayerType
    inputs: list[str]
    output: str
    build: Callable[[Addresses], Body]
    elements: int = 0  # values the CPU touches, for the cycle estimate
    macs: int = 0

    @property
    def main_out(self) -> bool:
        return True

    @property
    def writes_kpu(self) -> bool:
        """Whether the output goes to KPU RAM (an upload or the padded input of a KPU fully connected layer)."""
        return self.layer_type in (LayerType.K210_UPLOAD, LayerType.K210_ADD_PADDING)


@dataclass
class Program:
    tensors: dict[str, LTensor]
    steps: list[KpuStep | CpuStep] = field(default_factory=list)
    input: str = ""
    outputs: list[str] = field(default_factory=list)
    output_quant: list[Quant] = field(default_factory=list)
