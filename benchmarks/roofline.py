"""This CPU's limit for a model file, node by node (a roofline), and where ONNX Runtime's time goes against it.

A node can take no less than max(FLOPs / peak, bytes / bandwidth): the peak of its precision (numpy's float32
matrix multiply, or ONNX Runtime's uint8 x int8 one: the kernels behind the int8 model's convolutions) and the
bandwidth of a numpy copy, all measured in the same rounds as the models. A model file's limit is the sum over its
nodes. FLOPs (2 x multiply-adds, of convolutions and matrix multiplies) and bytes (inputs, weights and outputs) come
from the ONNX graph with ONNX's shape inference, counted as ONNX Runtime runs the nodes:
- in the int8 (QDQ) model, a node between DequantizeLinear and QuantizeLinear nodes runs on the quantized tensors
  (one byte an element; ONNX Runtime fuses the pairs into QLinearConv, QGemm, QLinearAdd...), and only the pairs
  that meet a float node run on their own;
- elementwise nodes right after a convolution or matrix multiply (bias, batch norm, ReLU6, a residual Add) run
  inside it, as ONNX Runtime fuses them, so their tensors never go to memory.
ONNX Runtime's profiler gives each node's time; both sides sort nodes into the same kinds.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

KINDS = {"conv": "Conv", "depthwise": "depthwise Conv", "dense": "MatMul/Gemm", "other": "other"}
COMPUTE_OPS = ("Conv", "Gemm", "MatMul")
ELEMENTWISE_OPS = ("Add", "Mul", "Sub", "Div", "Clip", "Relu", "Sigmoid", "BatchNormalization")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
# A pause before each session's turn: the threads the one before left spinning go to sleep (benchmark.py's reason).
SETTLE_SECONDS = 0.1
# The convolution and matrix multiply kernels ONNX Runtime's profiler names (float, fused, int8).
CONV_KERNELS = ("Conv", "FusedConv", "NhwcFusedConv", "QLinearConv", "ConvInteger")
DENSE_KERNELS = ("Gemm", "MatMul", "FusedMatMul", "QGemm", "QLinearMatMul", "MatMulInteger", "MatMulIntegerToFloat")


@dataclass(frozen=True)
class Node:
    """One node as ONNX Runtime runs it (with the elementwise nodes it fuses): its kind, precision, work and traffic."""

    name: str
    kind: str  # a key of KINDS
    precision: str  # "int8" or "float32": which peak bounds its FLOPs
    flops: int
    read: int  # bytes: its inputs and weights
    written: int  # bytes: its outputs

    @property
    def bytes(self) -> int:
        return self.read + self.written


@dataclass(frozen=True)
class Rates:
    """This CPU's rates, measured in the same rounds as the models."""

    float32: float  # FLOP/s, numpy's float32 matrix multiply
    int8: float  # OP/s, ONNX Runtime's uint8 x int8 matrix multiply
    bandwidth: float  # bytes/s, a numpy copy (read + write)

    def least_seconds(self, node: Node) -> float:
        return max(node.flops / (self.int8 if node.precision == "int8" else self.float32), node.bytes / self.bandwidth)

    def memory_bound(self, node: Node) -> bool:
        return node.bytes / self.bandwidth > node.flops / (self.int8 if node.precision == "int8" else self.float32)


def graph_nodes(model_path: Path) -> list[Node]:
    """The model file's nodes as ONNX Runtime runs them, at batch 1."""
    import onnx

    graph = onnx.shape_inference.infer_shapes(onnx.load(model_path)).graph
    shapes: dict[str, tuple[list[int], int]] = {}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        tensor = info.type.tensor_type
        shapes[info.name] = ([d.dim_value or 1 for d in tensor.shape.dim], tensor.elem_type)  # a free batch: 1
    for initializer in graph.initializer:
        shapes[initializer.name] = (list(initializer.dims), initializer.data_type)
    producers = {output: node for node in graph.node for output in node.output}
    consumers = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    outputs = {output.name for output in graph.output}
    constants = {initializer.name for initializer in graph.initializer}
    for node in graph.node:  # in graph order, so a DequantizeLinear of a constant is known when reached
        if node.op_type == "Constant" or (node.op_type == "DequantizeLinear" and node.input[0] in constants):
            constants.update(node.output)

    def made_by(name: str, op: str) -> bool:
        return name in producers and producers[name].op_type == op

    def only_to(name: str, op: str) -> bool:
        return name not in outputs and bool(consumers[name]) and all(c.op_type == op for c in consumers[name])

    def size(name: str, element_type: int | None = None) -> int:
        elements, stored_type = shapes.get(name, ([], onnx.TensorProto.FLOAT))
        return int(np.prod(elements)) * onnx.helper.tensor_dtype_to_np_dtype(element_type or stored_type).itemsize

    def clipped(name: str) -> bool:
        """A ReLU6 (Clip) or ReLU only quantized after: ONNX Runtime drops it, the quantization's range clips."""
        following = consumers[name]
        return (
            name not in outputs
            and len(following) == 1
            and following[0].op_type in ("Clip", "Relu")
            and only_to(following[0].output[0], "QuantizeLinear")
        )

    def in_int8(node) -> bool:
        data = [name for name in node.input if name and name not in constants]
        return (
            node.op_type not in (*QDQ_OPS, "Clip", "Relu")
            and bool(data)
            and all(made_by(name, "DequantizeLinear") for name in data)
            and all(only_to(name, "QuantizeLinear") or clipped(name) for name in node.output)
        )

    int8 = {node.name for node in graph.node if in_int8(node)}
    fused = {c.name for node in graph.node if node.name in int8 for name in node.output for c in consumers[name]}
    fused -= {node.name for node in graph.node if node.op_type == "QuantizeLinear"}
    int8 |= fused  # the dropped Clip: the QuantizeLinear after it is the int8 node's too
    nodes = []
    for node in graph.node:
        if node.name in fused or node.op_type == "Constant":
            continue
        if node.op_type == "DequantizeLinear" and (
            node.input[0] in constants or all(c.name in int8 for c in consumers[node.output[0]])
        ):
            continue  # a weight's, or folded into the int8 nodes it feeds
        if node.op_type == "QuantizeLinear" and node.input[0] in producers and producers[node.input[0]].name in int8:
            continue  # written by the int8 node before it
        if node.name in int8:
            # It reads what its DequantizeLinear nodes read (a float weight, ONNX Runtime quantizes to int8 itself),
            # and writes what QuantizeLinear would.
            read = sum(
                size(producers[name].input[0])
                if made_by(name, "DequantizeLinear")
                else size(name, onnx.TensorProto.INT8 if position == 1 else None)
                for position, name in enumerate(node.input)
                if name
            )
            written = sum(size(name, onnx.TensorProto.UINT8) for name in node.output)
            nodes.append(Node(node.name, kind_of(node), "int8", flops(node, shapes), read, written))
            continue
        members = [node]
        while node.op_type in COMPUTE_OPS:
            [last] = members[-1].output
            following = consumers[last]
            if last in outputs or len(following) != 1 or following[0].op_type not in ELEMENTWISE_OPS:
                break
            members.append(following[0])
            fused.add(following[0].name)
        inside = {name for member in members for name in member.output}
        read = sum(size(name) for name in {n for member in members for n in member.input if n and n not in inside})
        written = sum(size(name) for name in members[-1].output)
        nodes.append(Node(node.name, kind_of(node), "float32", flops(node, shapes), read, written))
    return nodes


def kind_of(node) -> str:
    if node.op_type == "Conv":
        return "depthwise" if group(node) > 1 else "conv"
    return "dense" if node.op_type in ("Gemm", "MatMul") else "other"


def group(node) -> int:
    return next((attribute.i for attribute in node.attribute if attribute.name == "group"), 1)


def flops(node, shapes: dict[str, tuple[list[int], int]]) -> int:
    """2 x multiply-adds of a convolution or matrix multiply; elementwise work is not counted (it is memory-bound)."""
    output = int(np.prod(shapes[node.output[0]][0]))
    if node.op_type == "Conv":
        weight = shapes[node.input[1]][0]  # (out channels, in channels / group, kernel height, width)
        return 2 * output * int(np.prod(weight[1:]))
    if node.op_type == "Gemm":
        transposed = any(attribute.name == "transB" and attribute.i for attribute in node.attribute)
        weight = shapes[node.input[1]][0]
        return 2 * output * weight[1 if transposed else 0]
    if node.op_type == "MatMul":
        return 2 * output * shapes[node.input[0]][0][-1]
    return 0


def by_kind(nodes: list[Node], rates: Rates) -> dict[str, dict[str, float]]:
    """Per kind: FLOPs, bytes, the least milliseconds (summed per node) and how many of its nodes are memory-bound."""
    kinds: dict[str, dict[str, float]] = {}
    for node in nodes:
        kind = kinds.setdefault(node.kind, {"nodes": 0, "flops": 0, "bytes": 0, "least_ms": 0.0, "memory_bound": 0})
        kind["nodes"] += 1
        kind["flops"] += node.flops
        kind["bytes"] += node.bytes
        kind["least_ms"] += 1000 * rates.least_seconds(node)
        kind["memory_bound"] += rates.memory_bound(node)
    return kinds


def limit_ms(nodes: list[Node], rates: Rates) -> float:
    return 1000 * sum(rates.least_seconds(node) for node in nodes)


def profiles(
    files: dict[str, tuple[Path, tuple[str, ...]]], array: np.ndarray, warmup: int = 5, rounds: int = 5, turn: int = 5
) -> dict[str, dict]:
    """ONNX Runtime's profiler on batch 1, for each model file (name -> its path and the graph optimizers to turn
    off), with the engine's own session options; the sessions run in turns, so that all see the same load. For each:
    milliseconds per image by kind of node, and per kernel it ran (op type, execution provider) its count and
    milliseconds."""
    import onnxruntime

    from muffin_v_chihuahua.engines import OnnxEngine

    folder = Path(tempfile.mkdtemp())
    sessions = {}
    for index, (name, (path, disabled)) in enumerate(files.items()):
        options = OnnxEngine.session_options()
        options.enable_profiling = True
        options.profile_file_prefix = str(folder / f"onnxruntime-{index}")
        sessions[name] = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(disabled)
        )
    feeds = {name: {session.get_inputs()[0].name: array[None]} for name, session in sessions.items()}
    for name, session in sessions.items():
        for _ in range(warmup):
            session.run(None, feeds[name])
    for _ in range(rounds):
        for name, session in sessions.items():
            time.sleep(SETTLE_SECONDS)
            for _ in range(turn):
                session.run(None, feeds[name])
    found = {
        name: times(json.loads(Path(session.end_profiling()).read_text()), files[name][0], warmup, rounds * turn)
        for name, session in sessions.items()
    }
    shutil.rmtree(folder)
    return found


def times(events: list[dict], model_path: Path, warmup: int, runs: int) -> dict:
    import onnx

    groups = {node.name: group(node) for node in onnx.load(model_path).graph.node if node.op_type == "Conv"}
    timed = [event for event in events if event.get("cat") == "Node" and event["name"].endswith("_kernel_time")]
    per_run = len(timed) // (warmup + runs)
    kinds: dict[str, float] = {}
    kernels: dict[str, dict[str, float]] = {}
    for event in timed[warmup * per_run :]:
        name, args = event["name"].removesuffix("_kernel_time"), event["args"]
        milliseconds = event["dur"] / 1000 / runs
        kind = executed_kind(name, args, groups)
        kinds[kind] = kinds.get(kind, 0.0) + milliseconds
        kernel = kernels.setdefault(
            f"{args['op_name']} ({args.get('provider', '?')})", {"count": 0, "ms": 0.0, "nchwc": 0}
        )
        kernel["count"] += 1 / runs
        kernel["ms"] += milliseconds
        kernel["nchwc"] += name.endswith("_nchwc") / runs  # ONNX Runtime's channel-blocked layout
    return {"file": str(model_path), "kinds": kinds, "kernels": kernels}


def executed_kind(name: str, args: dict, groups: dict[str, int]) -> str:
    """The kind of a node ONNX Runtime ran. A float convolution's profile gives its weight's shape (out channels, in
    channels / group, ...); an int8 one's weight is prepacked, so its group is the graph node's, which ONNX Runtime's
    layout pass renamed with a _token_<n> suffix."""
    op = args["op_name"]
    if op in CONV_KERNELS:
        weight = next(iter(args["input_type_shape"][1].values()))
        if len(weight) == 4:
            return "depthwise" if weight[1] == 1 else "conv"
        return "depthwise" if groups.get(re.sub(r"_token_\d+$", "", name), 1) > 1 else "conv"
    return "dense" if op in DENSE_KERNELS else "other"


# MLAS, ONNX Runtime's CPU kernel library, picks its kernels from the CPU's flags when it loads and does not report
# them: these are the choices of onnxruntime/core/mlas/lib/platform.cpp, first flag present wins. Its uint8 x int8
# depthwise kernel is AVX2 on every x86-64 CPU.
MLAS_KERNELS = {
    "uint8 x int8 matrix multiply and convolution (QGemm, QLinearConv)": (
        ("avx512_vnni", "AVX-512 VNNI (vpdpbusd: one instruction per 4 multiply-adds)"),
        ("avx_vnni", "AVX-VNNI (vpdpbusd on 256 bits)"),
        ("avx512bw", "AVX-512 core (vpmaddubsw + vpmaddwd: two instructions)"),
        ("avx2", "AVX2 (vpmaddubsw + vpmaddwd on 256 bits: two instructions)"),
    ),
    "uint8 x int8 depthwise convolution": (("avx2", "AVX2"),),
    "float32 convolution and matrix multiply (NCHWc Conv, Gemm)": (
        ("avx512f", "AVX-512F (FMA on 512 bits)"),
        ("avx2", "FMA3 (FMA on 256 bits)"),
    ),
}


def mlas_kernels(flags: set[str]) -> dict[str, str]:
    return {
        what: next((kernel for flag, kernel in choices if flag in flags), "SSE (none of the above flags)")
        for what, choices in MLAS_KERNELS.items()
    }
