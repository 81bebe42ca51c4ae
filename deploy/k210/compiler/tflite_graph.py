"""Read a full-integer TFLite flatbuffer (with the `tflite` package's generated classes) into a small graph IR:
tensors with shape, type, per-tensor or per-channel quantization and constant data, and operators in execution
order with their builtin options as a plain dict.

A corrupt or truncated file never escapes as IndexError/struct.error: every access runs under `_reading`, which
turns any failure into a PipelineError naming the field and the flatbuffer table offset being read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tflite

from pipeline.errors import PipelineError

TENSOR_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 9: "int8", 7: "int16"}
OPCODE_NAMES = {value: name for name, value in vars(tflite.BuiltinOperator).items() if not name.startswith("_")}
OPTION_CLASSES = {value: name for name, value in vars(tflite.BuiltinOptions).items() if not name.startswith("_")}
PADDING_NAMES = {0: "SAME", 1: "VALID"}
ACTIVATION_NAMES = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
OPTION_GETTERS = ("Padding", "StrideW", "StrideH", "FusedActivationFunction", "DilationWFactor", "DilationHFactor",
                  "DepthMultiplier", "FilterWidth", "FilterHeight", "Alpha", "Axis", "BlockSize", "KeepDims",
                  "Beta", "KeepNumDims", "WeightsFormat", "NewShape")


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: np.ndarray  # float32, one value (per tensor) or one per channel along `quantized_dim`
    zero_point: np.ndarray  # int64, same length as scale
    quantized_dim: int = 0
    data: np.ndarray | None = None  # constant contents, reshaped to `shape`

    @property
    def is_quantized(self) -> bool:
        return self.scale.size > 0


@dataclass
class Operator:
    index: int
    opcode: str
    inputs: list[int]  # tensor indices, -1 for an omitted optional input
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)
    # what the compiler's graph rewrites decided about this op (compiler/passes): e.g. "fused_into", "leaky", "pool"
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    path: str
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]

    def consumers(self, tensor: int) -> list[Operator]:
        return [op for op in self.operators if tensor in op.inputs]

    def producer(self, tensor: int) -> Operator | None:
        return next((op for op in self.operators if tensor in op.outputs), None)

    def sole_consumer(self, tensor: int) -> Operator | None:
        """The only op reading `tensor`, or None when several do or it is also a model output."""
        users = self.consumers(tensor)
        if len(users) != 1 or tensor in self.outputs:
            return None
        return users[0]


class _Context:
    """Where the reader currently is, for error messages."""

    def __init__(self, path: str, size: int) -> None:
        self.path = path
        self.size = size


@contextlib.contextmanager
def _reading(ctx: _Context, what: str, table: Any = None) -> Iterator[None]:
    try:
        yield
    except PipelineError:
        raise
    except Exception as exc:  # the generated flatbuffer code raises many types on corrupt input
        offset = getattr(getattr(table, "_tab", None), "Pos", None)
        where = f" (flatbuffer table at offset {offset})" if offset is not None else ""
        raise PipelineError(f"corrupt or truncated TFLite flatbuffer while reading {what}{where}: "
                            f"{type(exc).__name__}: {exc}", path=ctx.path, field=what,
                            expected="a valid TFLite model as written by tf.lite.TFLiteConverter") from None


def _count(ctx: _Context, value: int, what: str, item_bytes: int = 4) -> int:
    """A vector length that cannot be larger than the file (guards loops against corrupt lengths)."""
    if value < 0 or value * item_bytes > ctx.size:
        raise PipelineError(f"vector length {value} is impossible in a {ctx.size}-byte file", path=ctx.path,
                            field=what, expected="a valid TFLite flatbuffer")
    return value


def _options(ctx: _Context, op: Any, name: str) -> dict[str, Any]:
    with _reading(ctx, f"{name}.builtin_options", op):
        kind = op.BuiltinOptionsType()
        table = op.BuiltinOptions()
        if table is None or kind not in OPTION_CLASSES or kind == 0:
            return {}
        cls = getattr(tflite, OPTION_CLASSES[kind], None)
        if cls is None:
            return {}
        opts = cls()
        opts.Init(table.Bytes, table.Pos)
        values = {}
        for getter in OPTION_GETTERS:
            if hasattr(opts, getter) and getter != "NewShape":
                values[getter] = getattr(opts, getter)()
        if "Padding" in values:
            values["Padding"] = PADDING_NAMES.get(values["Padding"], str(values["Padding"]))
        if "FusedActivationFunction" in values:
            values["FusedActivationFunction"] = ACTIVATION_NAMES.get(values["FusedActivationFunction"], "UNKNOWN")
        return values


def _tensor(ctx: _Context, model: Any, graph: Any, index: int) -> Tensor:
    what = f"subgraphs[0].tensors[{index}]"
    with _reading(ctx, what):
        t = graph.Tensors(index)
    with _reading(ctx, what, t):
        name = (t.Name() or b"").decode("utf-8", "replace")
        shape = tuple(int(v) for v in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        dtype = TENSOR_TYPES.get(t.Type(), f"type{t.Type()}")
        q = t.Quantization()
        scale = np.zeros(0, np.float32)
        zero = np.zeros(0, np.int64)
        qdim = 0
        if q is not None and q.ScaleLength():
            scale = q.ScaleAsNumpy().astype(np.float32)
            zero = (q.ZeroPointAsNumpy().astype(np.int64) if q.ZeroPointLength()
                    else np.zeros(scale.size, np.int64))
            qdim = int(q.QuantizedDimension())
        data = None
        buffer_index = t.Buffer()
        if 0 < buffer_index < _count(ctx, model.BuffersLength(), "buffers"):
            buf = model.Buffers(buffer_index)
            if buf.DataLength():
                raw = buf.DataAsNumpy()
                np_type = {"float32": "<f4", "int32": "<i4", "uint8": "u1", "int8": "i1", "int64": "<i8",
                           "int16": "<i2", "float16": "<f2"}.get(dtype)
                if np_type is not None:
                    data = np.frombuffer(raw.tobytes(), dtype=np_type)
                    if shape and data.size == int(np.prod(shape)):
                        data = data.reshape(shape)
    return Tensor(index=index, name=name, shape=shape, dtype=dtype, scale=scale, zero_point=zero,
                  quantized_dim=qdim, data=data)


def read_tflite(source: bytes | str | Path, *, path: str | Path | None = None) -> Graph:
    """Parse the first subgraph of a TFLite model."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise PipelineError("TFLite file not found", path=path, expected="an existing .tflite file")
        data = path.read_bytes()
    else:
        data = bytes(source)
    ctx = _Context(str(path) if path else "<tflite bytes>", len(data))
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise PipelineError("missing the 'TFL3' file identifier at offset 4", path=ctx.path, field="file_identifier",
                            expected="a TFLite flatbuffer")
    with _reading(ctx, "model"):
        model = tflite.Model.GetRootAsModel(data, 0)
        if _count(ctx, model.SubgraphsLength(), "subgraphs") < 1:
            raise PipelineError("model has no subgraph", path=ctx.path, field="subgraphs", expected="1 subgraph")
        graph = model.Subgraphs(0)
    with _reading(ctx, "subgraphs[0]", graph):
        tensor_count = _count(ctx, graph.TensorsLength(), "subgraphs[0].tensors")
        inputs = [int(v) for v in graph.InputsAsNumpy()] if graph.InputsLength() else []
        outputs = [int(v) for v in graph.OutputsAsNumpy()] if graph.OutputsLength() else []
        op_count = _count(ctx, graph.OperatorsLength(), "subgraphs[0].operators")
        code_count = _count(ctx, model.OperatorCodesLength(), "operator_codes")
    tensors = [_tensor(ctx, model, graph, i) for i in range(tensor_count)]
    operators = []
    for i in range(op_count):
        name = f"subgraphs[0].operators[{i}]"
        with _reading(ctx, name):
            op = graph.Operators(i)
            code_index = op.OpcodeIndex()
            if not 0 <= code_index < code_count:
                raise PipelineError(f"opcode index {code_index} out of range", path=ctx.path, field=f"{name}.opcode",
                                    expected=f"0..{code_count - 1}")
            code = model.OperatorCodes(code_index)
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            op_inputs = [int(v) for v in op.InputsAsNumpy()] if op.InputsLength() else []
            op_outputs = [int(v) for v in op.OutputsAsNumpy()] if op.OutputsLength() else []
        opcode = OPCODE_NAMES.get(builtin, f"BUILTIN_{builtin}")
        if opcode == "CUSTOM":
            with _reading(ctx, f"{name}.custom_code", code):
                opcode = f"CUSTOM:{(code.CustomCode() or b'').decode('utf-8', 'replace')}"
        for tensor_index in op_inputs + op_outputs:
            if not -1 <= tensor_index < tensor_count:
                raise PipelineError(f"tensor index {tensor_index} out of range", path=ctx.path, field=name,
                                    expected=f"-1..{tensor_count - 1}")
        operators.append(Operator(i, opcode, op_inputs, op_outputs, _options(ctx, op, name)))
    for tensor_index in inputs + outputs:
        if not 0 <= tensor_index < tensor_count:
            raise PipelineError(f"graph input/output tensor {tensor_index} out of range", path=ctx.path,
                                field="subgraphs[0].inputs/outputs", expected=f"0..{tensor_count - 1}")
    return Graph(path=ctx.path, tensors=tensors, operators=operators, inputs=inputs, outputs=outputs)
