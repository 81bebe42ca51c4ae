"""Fake-quantisation layers for quantization-aware training (Keras 3; tensorflow-model-optimization does not support
it): a per-tensor activation quantizer with a learned clip range (PACT-style trainable bound) and a wrapper that runs
a layer on per-output-channel fake-quantised weights and fake-quantises its output. Both use TensorFlow's fake-quant
ops: straight-through gradients for the values inside the range, gradients for the clip bounds from the values
outside it. The scheme is the converter's: activations int8 asymmetric per tensor, weights int8 symmetric per output
channel in [-127, 127]. Optionally the wrapper adds a kurtosis penalty on its kernel (KURE, Chmiel et al. 2020,
"Robust quantization: one model to rule them all"): per output channel (kurtosis - 1.8)^2, 1.8 being a uniform
distribution's, which draws each channel's weights toward a compact distribution that its max|w| scale covers with
fewer unused codes."""

from __future__ import annotations

import keras
import tensorflow as tf

BITS = 8
CLIP_RATE = 10.0  # a clip bound moves CLIP_RATE times faster, relative to its size, than a weight of size 1
UNIFORM_KURTOSIS = 1.8  # the kurtosis of a uniform distribution, the kurtosis penalty's target


class ActivationQuantizer(keras.layers.Layer):
    """Fake-quantises a tensor to 8 bits over [low, high]. The bounds start at a PTQ range and are learned, each as
    start * (1 + CLIP_RATE * v) with v trainable from 0; `fixed_low` keeps the low bound where it started (0 for a
    ReLU output), `trainable=False` keeps both."""

    def __init__(self, low: float, high: float, fixed_low: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.start = (float(min(low, 0.0)), float(max(high, 0.0)))
        self.low_step = self.add_weight(shape=(), initializer="zeros", name="low_step",
                                        trainable=not fixed_low and self.trainable)
        self.high_step = self.add_weight(shape=(), initializer="zeros", name="high_step", trainable=self.trainable)

    def bounds(self):
        """(low, high) as tensors: low <= 0 < high."""
        low = tf.minimum(self.start[0] * (1.0 + CLIP_RATE * self.low_step), 0.0)
        high = tf.maximum(self.start[1] * (1.0 + CLIP_RATE * self.high_step), low + 1e-6)
        return low, high

    def range(self) -> tuple[float, float]:
        """The learned (low, high) as floats."""
        low, high = self.bounds()
        return float(low), float(high)

    def call(self, inputs):
        low, high = self.bounds()
        return tf.quantization.fake_quant_with_min_max_vars(inputs, low, high, num_bits=BITS)


def _per_channel(kernel, depthwise: bool):
    """The kernel with its output channels on the last axis (a depthwise kernel (k, k, C, M) as (k, k, C * M)), and
    the axes that hold one channel's weights."""
    flat = tf.reshape(kernel, tf.concat([tf.shape(kernel)[:-2], [-1]], 0)) if depthwise else kernel
    return flat, list(range(len(flat.shape) - 1))


def kurtosis_penalty(kernel, depthwise: bool = False):
    """Mean over output channels of (kurtosis - UNIFORM_KURTOSIS)^2 of each channel's weights."""
    flat, axes = _per_channel(kernel, depthwise)
    centred = flat - tf.reduce_mean(flat, axis=axes, keepdims=True)
    variance = tf.reduce_mean(tf.square(centred), axis=axes)
    kurtosis = tf.reduce_mean(tf.square(tf.square(centred)), axis=axes) / tf.maximum(tf.square(variance), 1e-12)
    return tf.reduce_mean(tf.square(kurtosis - UNIFORM_KURTOSIS))


def fake_quant_weights(kernel, depthwise: bool = False):
    """Per-output-channel symmetric int8 fake quantisation of a kernel (the last axis, or for a depthwise kernel
    (k, k, C, M) its C * M output channels), scale max|w| / 127 as the converter sets it; straight-through."""
    shape = tf.shape(kernel)
    flat, axes = _per_channel(kernel, depthwise)
    bound = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(flat), axis=axes), 1e-8))
    quantized = tf.quantization.fake_quant_with_min_max_vars_per_channel(flat, -bound, bound, num_bits=BITS,
                                                                        narrow_range=True)
    return tf.reshape(quantized, shape) if depthwise else quantized


class Quantized(keras.layers.Layer):
    """Runs `inner` (a fresh copy of a model layer, under the layer's name) with its kernel fake-quantised when it
    has one, fake-quantises its output with `output` when given (quantizers may be shared by tied tensors), and its
    input with `input_quantizer` when given (the model's raw-byte input). With `kurtosis_weight` > 0 a kernel's layer
    adds that weight x kurtosis_penalty to the model's losses."""

    def __init__(self, inner: keras.layers.Layer, output: ActivationQuantizer | None,
                 input_quantizer: ActivationQuantizer | None = None, kurtosis_weight: float = 0.0,
                 **kwargs) -> None:
        super().__init__(name=inner.name, **kwargs)
        self.inner = inner
        self.output_quantizer = output
        self.input_quantizer = input_quantizer
        self.kurtosis_weight = float(kurtosis_weight)

    def build(self, input_shape) -> None:
        if not self.inner.built:
            self.inner.build(input_shape)

    def call(self, inputs, training=None, mask=None):
        if self.input_quantizer is not None:
            inputs = self.input_quantizer(inputs)
        outputs = self._weighted(inputs) if hasattr(self.inner, "kernel") else self.inner(inputs, training=training)
        return self.output_quantizer(outputs) if self.output_quantizer is not None else outputs

    def _weighted(self, inputs):
        layer = self.inner
        if self.kurtosis_weight > 0:
            depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
            self.add_loss(self.kurtosis_weight * kurtosis_penalty(layer.kernel, depthwise))
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            outputs = keras.ops.depthwise_conv(inputs, fake_quant_weights(layer.kernel, depthwise=True),
                                               strides=layer.strides, padding=layer.padding,
                                               dilation_rate=layer.dilation_rate, data_format=layer.data_format)
        elif isinstance(layer, keras.layers.Conv2D):
            outputs = layer.convolution_op(inputs, fake_quant_weights(layer.kernel))
        else:  # Dense
            outputs = keras.ops.matmul(inputs, fake_quant_weights(layer.kernel))
        if layer.use_bias:
            outputs = outputs + layer.bias
        return layer.activation(outputs) if layer.activation is not None else outputs


def raw_input_quantizer() -> ActivationQuantizer:
    """The model input as the board feeds it: RGB bytes / 255, so [0, 1] in 256 steps, not learned."""
    return ActivationQuantizer(0.0, 1.0, fixed_low=True, trainable=False, name="raw_input_quantizer")

