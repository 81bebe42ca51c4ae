"""Each compiler rewrite alone, on small hand-made graphs and programs (the whole compiler: test_k210_compile.py)."""

from __future__ import annotations

import numpy as np
import pytest

from deploy.k210.compiler.kpu_params import Quant, identity_arithmetic
from deploy.k210.compiler.passes import (
    adjacent_concat,
    defer_decimation,
    fold_pad,
    fuse_activation,
    fuse_pool,
    rewrite_graph,
    split_weight_loads,
)
from deploy.k210.compiler.program import KpuStep, LTensor, Program
from deploy.k210.compiler.tflite_graph import Graph, Operator, Tensor
from hardware.k210 import PoolType


class GraphBuilder:
    """A TFLite-like graph: uint8 maps with one scale, int8 constant weights."""

    def __init__(self) -> None:
        self.tensors: list[Tensor] = []
        self.operators: list[Operator] = []

    def tensor(self, shape: tuple[int, ...], dtype: str = "uint8", data: np.ndarray | None = None,
               scale: float = 0.05, zero_point: int = 0) -> int:
        index = len(self.tensors)
        self.tensors.append(Tensor(index, f"t{index}", shape, dtype, np.array([scale], np.float32),
                                   np.array([zero_point]), data=data))
        return index

    def op(self, opcode: str, inputs: list[int], out_shape: tuple[int, ...], **options) -> int:
        out = self.tensor(out_shape)
        self.operators.append(Operator(len(self.operators), opcode, inputs, [out], options))
        return out

    def conv(self, x: int, out_ch: int, k: int, out_hw: tuple[int, int], *, depthwise: bool = False,
             stride: int = 1, padding: str = "SAME") -> int:
        in_ch = self.tensors[x].shape[3]
        shape = (1, k, k, in_ch) if depthwise else (out_ch, k, k, in_ch)
        weights = self.tensor(shape, "int8", np.ones(shape, np.int8))
        return self.op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", [x, weights], (1, *out_hw, out_ch),
                       Padding=padding, StrideH=stride, StrideW=stride, FusedActivationFunction="NONE")

    def graph(self, inputs: list[int], outputs: list[int]) -> Graph:
        return Graph("hand-made", self.tensors, self.operators, inputs, outputs)


def pad_then_conv(pads: list[list[int]]) -> tuple[Graph, Operator, Operator]:
    b = GraphBuilder()
    x = b.tensor((1, 8, 8, 4))
    paddings = b.tensor((4, 2), "int32", np.array(pads, np.int32))
    padded = b.op("PAD", [x, paddings], (1, 10, 10, 4))
    y = b.conv(padded, 8, 3, (8, 8), padding="VALID")
    graph = b.graph([x], [y])
    return graph, graph.operators[0], graph.operators[1]


def test_fold_pad_moves_a_one_pixel_pad_into_its_3x3_valid_convs():
    graph, pad, conv = pad_then_conv([[0, 0], [1, 1], [1, 1], [0, 0]])
    assert fold_pad.match(graph, pad) == [conv]
    fold_pad.run(graph)
    assert pad.attrs == {"folded": True} and conv.attrs == {"padded_input": pad.inputs[0]}


def test_fold_pad_leaves_other_pads_alone():
    graph, pad, _ = pad_then_conv([[0, 0], [2, 2], [2, 2], [0, 0]])
    assert fold_pad.match(graph, pad) is None


def conv_chain(*followers: str, graph_output_after_conv: bool = False) -> tuple[Graph, list[Operator]]:
    b = GraphBuilder()
    x = b.tensor((1, 8, 8, 4))
    y = b.conv(x, 8, 3, (8, 8))
    outputs = [y] if graph_output_after_conv else []
    for opcode in followers:
        if opcode == "MAX_POOL_2D" or opcode == "AVERAGE_POOL_2D":
            y = b.op(opcode, [y], (1, 4, 4, 8), FilterWidth=2, FilterHeight=2, StrideW=2, StrideH=2,
                     Padding="VALID", FusedActivationFunction="NONE")
        else:
            y = b.op(opcode, [y], (1, 8, 8, 8), Alpha=0.1)
    graph = b.graph([x], outputs + [y])
    return graph, graph.operators


def test_fuse_activation_takes_a_following_relu_into_the_conv():
    graph, (conv, relu, leaky) = conv_chain("RELU", "LEAKY_RELU")
    assert fuse_activation.match(graph, conv) == (relu, None)  # a LeakyReLU after a clamp stays an op of its own
    fuse_activation.run(graph)
    assert conv.attrs == {"clamp": relu} and relu.attrs["fused_into"] == conv.index and leaky.attrs == {}
    assert fuse_activation.activated_output(conv) == fuse_activation.activation_output(conv) == relu.outputs[0]


def test_fuse_activation_takes_a_following_leaky_relu_onto_the_conv():
    graph, (conv, leaky) = conv_chain("LEAKY_RELU")
    fuse_activation.run(graph)
    assert conv.attrs == {"leaky": leaky} and leaky.attrs["fused_into"] == conv.index
    assert fuse_activation.activated_output(conv) == conv.outputs[0]
    assert fuse_activation.activation_output(conv) == leaky.outputs[0]


def test_fuse_activation_keeps_an_activation_whose_input_is_a_model_output():
    graph, (conv, _) = conv_chain("RELU", graph_output_after_conv=True)
    assert fuse_activation.match(graph, conv) is None


@pytest.mark.parametrize(("followers", "fuse_leaky", "expected"), [
    (("MAX_POOL_2D",), False, PoolType.MAX_2_S2),
    (("AVERAGE_POOL_2D",), False, PoolType.MEAN_2_S2),
    (("LEAKY_RELU", "MAX_POOL_2D"), False, PoolType.MAX_2_S2),  # max pooling commutes with the LeakyReLU layer
    (("LEAKY_RELU", "AVERAGE_POOL_2D"), False, None),  # a mean does not
    (("LEAKY_RELU", "AVERAGE_POOL_2D"), True, PoolType.MEAN_2_S2),  # the LeakyReLU is in the conv's own table
])
def test_fuse_pool_puts_the_pool_into_the_write_back(followers, fuse_leaky, expected):
    graph, ops = conv_chain(*followers)
    fuse_activation.run(graph)
    found = fuse_pool.match(graph, ops[0], fuse_leaky=fuse_leaky)
    assert (found[0] if found else None) == expected
    if found:
        assert found[1] is ops[-1]


def test_kpu_pool_types_follow_window_stride_and_padding():
    def pool(opcode: str, k: int, s: int, padding: str, hw: int = 8) -> PoolType:
        op = Operator(0, opcode, [], [], {"FilterWidth": k, "FilterHeight": k, "StrideW": s, "StrideH": s,
                                          "Padding": padding})
        return fuse_pool.kpu_pool_type(op, (4, hw, hw))

    assert pool("MAX_POOL_2D", 2, 1, "SAME") == PoolType.MAX_2_S1
    assert pool("AVERAGE_POOL_2D", 4, 4, "VALID") == PoolType.MEAN_4_S4
    assert pool("MAX_POOL_2D", 2, 2, "SAME", hw=7) == PoolType.BYPASS  # SAME on an odd size pads: not the KPU's
    assert pool("MAX_POOL_2D", 3, 2, "SAME") == PoolType.BYPASS


def depthwise_then(padding: str, explicit_pad: bool, consumer_kernel: int) -> tuple[Graph, Operator, Operator]:
    b = GraphBuilder()
    x = b.tensor((1, 8, 8, 4))
    src = x
    if explicit_pad:
        paddings = b.tensor((4, 2), "int32", np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32))
        src = b.op("PAD", [x, paddings], (1, 10, 10, 4))
    d = b.conv(src, 4, 3, (4, 4), depthwise=True, stride=2, padding=padding)
    y = b.conv(d, 8, consumer_kernel, (4, 4))
    graph = b.graph([x], [y])
    fold_pad.run(graph)
    return graph, graph.operators[-2], graph.operators[-1]


def test_defer_decimation_hands_the_stride_to_the_following_1x1_conv():
    graph, depthwise, pointwise = depthwise_then("VALID", explicit_pad=True, consumer_kernel=1)
    assert defer_decimation.match(graph, depthwise) is pointwise
    defer_decimation.run(graph)
    assert depthwise.attrs["defer_decimation"] and pointwise.attrs["decimate_input"]


@pytest.mark.parametrize(("padding", "explicit_pad", "consumer_kernel"), [
    ("SAME", False, 1),  # TF 'SAME' on an even size: odd-centred windows, decimated by its own one-hot layer
    ("VALID", True, 3),  # a 3x3 consumer does not commute with the subsampling
])
def test_defer_decimation_needs_a_centred_depthwise_and_a_1x1_consumer(padding, explicit_pad, consumer_kernel):
    graph, depthwise, _ = depthwise_then(padding, explicit_pad, consumer_kernel)
    assert defer_decimation.match(graph, depthwise) is None


def test_rewrite_graph_leaves_its_input_untouched():
    graph, _ = conv_chain("RELU", "MAX_POOL_2D")
    rewritten = rewrite_graph(graph)
    assert all(op.attrs == {} for op in graph.operators)
    assert rewritten.operators[0].attrs["pool"] == PoolType.MAX_2_S2
    assert rewritten.operators[1].attrs["fused_into"] == rewritten.operators[2].attrs["fused_into"] == 0


def kpu_step(in_ch: int, out_ch: int, width: int, kernel: int = 3, output: str = "y") -> KpuStep:
    weights = np.ones(out_ch * in_ch * kernel * kernel, np.uint8)
    return KpuStep(source="#0 CONV_2D", input="x", output=output, in_shape=(in_ch, 8, width),
                   out_shape=(out_ch, 8, width), kernel=kernel, depthwise=False, pool_type=PoolType.BYPASS,
                   weights=weights, arithmetic=identity_arithmetic(out_ch))


def test_split_weight_loads_slices_output_channels_in_whole_line_groups():
    step = kpu_step(in_ch=512, out_ch=400, width=16)  # 4608 weight bytes per channel: 6 per 30 KiB load
    chunk = split_weight_loads.channels_per_layer(step)
    assert chunk == 6 * 64 // 4 * 4 == 384
    output = LTensor("y", step.out_shape, "u8", Quant(0.1, 3))
    made: list[LTensor] = []

    def new_slice(shape, quant):
        made.append(LTensor(f"part{len(made)}", shape, "u8", quant))
        return made[-1]

    parts = split_weight_loads.split(step, chunk, output, new_slice)
    assert [p.out_shape[0] for p in parts] == [384, 16]
    assert [t.kpu_parent for t in made] == [("y", 0), ("y", 384)]
    assert [len(p.arithmetic.bn) for p in parts] == [384, 16]
    assert sum(p.weights.size for p in parts) == step.weights.size
    assert split_weight_loads.split(kpu_step(8, 8, 16), chunk, output, new_slice)[0].output == "y"


def test_split_weight_loads_refuses_a_channel_larger_than_one_load():
    assert split_weight_loads.channels_per_layer(kpu_step(in_ch=4096, out_ch=4, width=16, kernel=3)) == 0


def concat_program(channels: tuple[int, int]) -> tuple[Program, list[LTensor], LTensor]:
    q = Quant(0.1, 0)
    tensors = {name: LTensor(name, (c, 8, 16), "u8", q) for name, c in zip(("a", "b"), channels, strict=True)}
    tensors["x"] = LTensor("x", (4, 8, 16), "u8", q)
    out = LTensor("y", (sum(channels), 8, 16), "u8", q)
    tensors["y"] = out
    prog = Program(tensors=tensors, input="x")
    prog.steps = [kpu_step(4, c, 16, output=name) for name, c in zip(("a", "b"), channels, strict=True)]
    return prog, [tensors["a"], tensors["b"]], out


def test_adjacent_concat_stores_kpu_parts_in_consecutive_channel_blocks():
    prog, parts, out = concat_program((8, 6))
    assert adjacent_concat.match(prog, parts, out, kpu_consumers_only=True)
    adjacent_concat.rewrite(parts, out)
    assert [p.kpu_parent for p in parts] == [("y", 0), ("y", 8)]


def test_adjacent_concat_needs_whole_line_groups_and_kpu_consumers():
    prog, parts, out = concat_program((6, 8))  # 6 channels of a 16-wide map leave half a 4-channel line group
    assert not adjacent_concat.match(prog, parts, out, kpu_consumers_only=True)
    prog, parts, out = concat_program((8, 8))
    assert not adjacent_concat.match(prog, parts, out, kpu_consumers_only=False)


def test_defer_decimation_leaves_an_odd_sized_depthwise_to_the_cpu_decimation():
    """On 7x7 a stride-2 pool would give 3x3 where the centred windows give 4x4 (lowered by decimate_cpu)."""
    b = GraphBuilder()
    x = b.tensor((1, 7, 7, 4))
    d = b.conv(x, 4, 3, (4, 4), depthwise=True, stride=2)
    y = b.conv(d, 8, 1, (4, 4))
    graph = b.graph([x], [y])
    assert defer_decimation.match(graph, graph.operators[0]) is None
    even, depthwise, pointwise = depthwise_then("VALID", explicit_pad=True, consumer_kernel=1)
    assert defer_decimation.match(even, depthwise) is pointwise
