"""The only layers the K210 compiler lowers: 1x1/3x3 conv + BN + activation, max-pool or pad+VALID stride 2,
3x3 depthwise, space_to_depth passthrough. Every builder in this package is made of these blocks."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

from pipeline.errors import PipelineError

ACTIVATIONS = ("leaky", "relu", "relu6")
BN_MOMENTUM = 0.9  # short CPU runs have few steps per epoch; 0.99 leaves the inference statistics stale


KPU_MIN_CHANNELS = 4
OUTPUT_STRIDES = (16, 32)


@dataclass(frozen=True)
class Widths:
    """Channel counts of a scaled network: round(base * multiplier), at least `floor` (>= the KPU's minimum 4).
    A floor above 4 widens the thin early layers, which hold the detail small faces need and cost few weights."""

    multiplier: float
    floor: int = KPU_MIN_CHANNELS

    def __call__(self, base: int) -> int:
        return max(self.floor, int(round(base * self.multiplier)))


def activation(x: keras.KerasTensor, kind: str, name: str) -> keras.KerasTensor:
    """LeakyReLU(0.1), ReLU or ReLU6: the activations the KPU's 16-segment table reproduces exactly."""
    if kind == "leaky":
        return keras.layers.LeakyReLU(negative_slope=0.1, name=f"{name}_leaky")(x)
    if kind == "relu":
        return keras.layers.ReLU(name=f"{name}_relu")(x)
    if kind == "relu6":
        return keras.layers.ReLU(max_value=6.0, name=f"{name}_relu6")(x)
    raise PipelineError(f"activation {kind!r}", field="model.activation", expected=f"one of {', '.join(ACTIVATIONS)}")


def conv_bn(x: keras.KerasTensor, filters: int, kernel: int, act: str, name: str,
            stride2: bool = False) -> keras.KerasTensor:
    """Conv 1x1/3x3 (no bias) + BatchNorm + activation; stride 2 as an explicit 1-pixel pad then a VALID conv."""
    if stride2:
        x = keras.layers.ZeroPadding2D(((1, 1), (1, 1)), name=f"{name}_pad")(x)
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="valid", use_bias=False, name=name)(x)
    else:
        x = keras.layers.Conv2D(filters, kernel, padding="same", use_bias=False, name=name)(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return activation(x, act, name)


def depthwise_bn(x: keras.KerasTensor, act: str, name: str, stride2: bool = False) -> keras.KerasTensor:
    """Depthwise 3x3 + BatchNorm + activation; stride 2 as an explicit 1-pixel pad then a VALID depthwise conv."""
    if stride2:
        x = keras.layers.ZeroPadding2D(((1, 1), (1, 1)), name=f"{name}_pad")(x)
        x = keras.layers.DepthwiseConv2D(3, strides=2, padding="valid", use_bias=False, name=name)(x)
    else:
        x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=name)(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return activation(x, act, name)


def max_pool(x: keras.KerasTensor, name: str) -> keras.KerasTensor:
    """2x2 stride-2 max pool, fused by the compiler into the preceding conv (KPU pool type max_2_s2)."""
    return keras.layers.MaxPooling2D(2, 2, name=name)(x)


@keras.saving.register_keras_serializable(package="facedet")
class SpaceToDepth(keras.layers.Layer):
    """YOLOv2 passthrough (reorg): each 2x2 block of pixels becomes 4x the channels; TFLite SPACE_TO_DEPTH."""

    def __init__(self, block_size: int = 2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.block_size = block_size

    def call(self, inputs):
        return tf.nn.space_to_depth(inputs, self.block_size)

    def compute_output_shape(self, input_shape):
        batch, height, width, depth = input_shape
        b = self.block_size
        return (batch, None if height is None else height // b, None if width is None else width // b, depth * b * b)

    def get_config(self) -> dict:
        return {**super().get_config(), "block_size": self.block_size}
