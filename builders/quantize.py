"""The float32 .onnx -> a static int8 QDQ .onnx beside it, gated against the float32 model.

ONNX Runtime's own tools: quant_pre_process (shape inference and graph clean-up), then quantize_static in the
QDQ format with per-channel int8 weights and uint8 activations whose ranges are calibrated on the dataset
photos, decoded exactly as the app decodes them. The int8 model is kept only when it gives the float32 model's
verdicts (the head's class and the "neither" rule, as Classifier computes them) on every dataset photo, catches
every sample picture float32 calls neither, and gives a heatmap like float32's on every dataset photo; otherwise
GateError stops the build.
"""

from __future__ import annotations

import importlib.metadata
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from builders.data import sha256_of
from muffin_v_chihuahua.engines import OnnxEngine
from muffin_v_chihuahua.evidence import NEITHER, EvidenceRule

INT8_FILE = "muffin_v_chihuahua.int8.onnx"
CALIBRATION_METHOD = CalibrationMethod.MinMax  # Percentile (99.999) kept no more verdicts here
GATED_OUTPUTS = ("imagenet", "verdict", "heatmap", "imagenet_logits", "features")
# The heatmap the page draws (its positive part, of the verdict's class) points where float32's does: their cosine
# similarity, on every dataset photo. On a picture that is neither, the map explains no verdict: recorded only.
HEATMAP_MIN_SIMILARITY = 0.9
BATCH = 16
# How each photo set is gated. int8 moves a photo's "neither" margin by 0.6 logit (median; up to 5 on a texture),
# whatever is kept in float (the dense layers too, or the last blocks as well: measured), so a picture near the
# threshold can tip either way:
# - "same": every verdict as float32's (the dataset photos, all far from the threshold);
# - "catches": int8 may call neither what float32 calls a class, never the reverse (pictures that are neither);
# - "recorded": the differences are counted, not gated (augmented copies, near the head's boundary and the threshold).
GATES = {"dataset": "same", "negatives": "catches", "augmented": "recorded"}


class GateError(RuntimeError):
    """The int8 model does not give the float32 model's verdicts; the message names the photos."""


def kept_in_float(model: onnx.ModelProto) -> list[str]:
    """The nodes the quantizer leaves without their own int8 weights and quantization parameters: the stem (the
    first convolution, whose input is the photo), the head (the 1280-channel convolution whose activations the
    pooled features and the heatmap come from), the heatmap's convolution and the two softmaxes (int8
    probabilities would be steps of 1/255). With every convolution quantized, 3 dataset muffins' evidence fell
    below the "neither" threshold and the top ImageNet label changed on 27 % of the photos; without these, every
    verdict holds. (ONNX Runtime may still run a convolution between two QDQ pairs in int8, quantizing its weights
    itself: the gates measure what it runs.)"""
    nodes = model.graph.node
    producers = {output: node for node in nodes for output in node.output}
    [pool] = [node for node in nodes if node.op_type == "GlobalAveragePool"]
    features = pool.input[0]  # the head's activations: Conv, then its ReLU6 (Clip)
    head = producers[features] if producers[features].op_type == "Conv" else producers[producers[features].input[0]]
    stem = next(node for node in nodes if node.op_type == "Conv")
    maps = [node.name for node in nodes if node.op_type == "Conv" and features in node.input]
    softmaxes = [node.name for node in nodes if node.op_type == "Softmax"]
    return [stem.name, head.name, *maps, *softmaxes]


class _Photos(CalibrationDataReader):
    """One photo at a time: the calibrator collects each activation's range over all of them."""

    def __init__(self, input_name: str, photos: npt.NDArray[np.float32]) -> None:
        self._batches: Iterator[npt.NDArray[np.float32]] = iter(photos[i : i + 1] for i in range(len(photos)))
        self._input = input_name

    def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._input: batch}


def depthwise_convolutions(model: onnx.ModelProto) -> list[str]:
    """The convolutions with a filter per channel (group > 1): benchmarks/ measures the int8 model with these kept in
    float32 too, to see whether quantizing them pays (in a session without ONNX Runtime's WeightBiasQuantization,
    which would quantize them again between their QDQ pairs)."""
    return [
        node.name
        for node in model.graph.node
        if node.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in node.attribute)
    ]


def quantize(
    float_path: Path, int8_path: Path, calibration: npt.NDArray[np.float32], depthwise_in_float: bool = False
) -> dict[str, Any]:
    """Write the int8 model (with depthwise_in_float, its depthwise convolutions too are kept in float32); return how
    it was made, for the card."""
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(float_path, prepared)
        model = onnx.load(prepared)
        excluded = kept_in_float(model) + (depthwise_convolutions(model) if depthwise_in_float else [])
        quantize_static(
            prepared,
            int8_path,
            _Photos(model.graph.input[0].name, calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            # uint8 activations with int8 weights (U8S8): what ONNX Runtime's x86 kernels multiply natively (VNNI's
            # unsigned x signed dot product); int8 activations ran slower than float32 here.
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CALIBRATION_METHOD,
            nodes_to_exclude=excluded,
        )
    return {
        "format": "QDQ (QuantizeLinear/DequantizeLinear pairs), static: activation ranges fixed at build time",
        "weights": "int8, per channel",
        "activations": "uint8, per tensor",
        "preprocessing": "onnxruntime.quantization.quant_pre_process (symbolic and ONNX shape inference, "
        "graph optimisation)",
        "calibration": {
            "method": CALIBRATION_METHOD.name,
            "photos": len(calibration),
            "source": "the dataset photos, decoded by muffin_v_chihuahua.images.decode as the app decodes them",
        },
        "per_channel": True,
        "excluded_nodes": excluded,
        "onnxruntime": importlib.metadata.version("onnxruntime"),
    }


def run_all(model_path: Path, photos: npt.NDArray[np.float32], output_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Every output of the model file on every photo, named as the card names them, in the app's session options."""
    session = onnxruntime.InferenceSession(
        str(model_path), OnnxEngine.session_options(), providers=["CPUExecutionProvider"]
    )
    if len(session.get_outputs()) != len(output_names):
        raise GateError(f"{model_path.name} has {len(session.get_outputs())} outputs, the card names {output_names}")
    input_name = session.get_inputs()[0].name
    parts = [session.run(None, {input_name: photos[i : i + BATCH]}) for i in range(0, len(photos), BATCH)]
    return {name: np.concatenate(outputs) for name, outputs in zip(output_names, zip(*parts, strict=True), strict=True)}


def verdicts(outputs: Mapping[str, np.ndarray], rule: EvidenceRule, class_names: Sequence[str]) -> list[str]:
    """What Classifier says for each photo: the head's class, unless the evidence rule makes it neither."""
    return [
        rule.judge(logits, features, class_names[int(np.argmax(verdict))]).verdict
        for logits, features, verdict in zip(
            outputs["imagenet_logits"], outputs["features"], outputs["verdict"], strict=True
        )
    ]


def heatmap_similarities(reference: Mapping[str, np.ndarray], quantized: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per photo, the cosine similarity of the two heatmaps as Classifier gives them: the positive part of the map
    of the class float32 chose (1: the same picture up to its scale; two empty maps are alike, one is not)."""
    chosen = reference["verdict"].argmax(axis=1)[:, None, None, None]
    ours, theirs = (
        np.maximum(np.take_along_axis(outputs["heatmap"], chosen, axis=3), 0).reshape(len(chosen), -1)
        for outputs in (reference, quantized)
    )
    norms = np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1)
    both_empty = (ours.max(axis=1) == 0) & (theirs.max(axis=1) == 0)
    return np.where(both_empty, 1.0, (ours * theirs).sum(axis=1) / np.maximum(norms, 1e-12))


def gate(
    float_path: Path,
    int8_path: Path,
    photo_sets: Mapping[str, tuple[list[str], npt.NDArray[np.float32]]],
    output_names: Sequence[str],
    rule: EvidenceRule,
    class_names: Sequence[str],
) -> dict[str, Any]:
    """Both models on every photo of every set (name -> (photo names, model inputs)): verdicts as GATES says, and on
    the "dataset" set heatmaps at least HEATMAP_MIN_SIMILARITY alike, or GateError. Returns, per set, the largest
    probability differences, the heatmaps' similarities and the photos whose top ImageNet label differs."""
    figures: dict[str, Any] = {}
    failures = []
    for set_name, (names, photos) in photo_sets.items():
        reference, quantized = run_all(float_path, photos, output_names), run_all(int8_path, photos, output_names)
        expected, actual = verdicts(reference, rule, class_names), verdicts(quantized, rule, class_names)
        policy = GATES.get(set_name, "same")
        differences = [
            (f"{name} ({was} in float32, {now} in int8)", was)
            for name, was, now in zip(names, expected, actual, strict=True)
            if was != now
        ]
        failures += [
            difference
            for difference, was in differences
            if policy == "same" or (policy == "catches" and was == NEITHER)
        ]
        similarities = heatmap_similarities(reference, quantized)
        if set_name == "dataset":
            failures += [
                f"{name} (heatmap {similarity:.2f} alike)"
                for name, similarity in zip(names, similarities, strict=True)
                if similarity < HEATMAP_MIN_SIMILARITY
            ]
        top_differs = reference["imagenet"].argmax(axis=1) != quantized["imagenet"].argmax(axis=1)
        figures[set_name] = {
            "photos": len(names),
            "same_verdicts": sum(was == now for was, now in zip(expected, actual, strict=True)),
            "gate": policy,
            "different_verdicts": [difference for difference, _ in differences],
            "max_probability_difference": {
                output: float(np.abs(reference[output] - quantized[output]).max()) for output in ("imagenet", "verdict")
            },
            "heatmap_similarity": {"min": float(similarities.min()), "median": float(np.median(similarities))},
            "top_imagenet_label_differs": [name for name, differs in zip(names, top_differs, strict=True) if differs],
        }
    if failures:
        raise GateError(f"the int8 model fails {len(failures)} gates: {', '.join(failures)}")
    return figures


def build(
    float_path: Path,
    photo_sets: Mapping[str, tuple[list[str], npt.NDArray[np.float32]]],
    output_names: Sequence[str],
    rule: EvidenceRule,
    class_names: Sequence[str],
) -> dict[str, Any]:
    """The int8 model beside float_path, calibrated on photo_sets["dataset"] and gated on every set: the card's
    entry for it (file, hash, size, how it was made, the gates' figures). A failed gate deletes it and raises."""
    missing = set(GATED_OUTPUTS) - set(output_names)
    if missing:
        raise GateError(f"the model has no {', '.join(sorted(missing))} output to gate on")
    int8_path = float_path.with_name(INT8_FILE)
    made = quantize(float_path, int8_path, photo_sets["dataset"][1])
    try:
        gates = gate(float_path, int8_path, photo_sets, output_names, rule, class_names)
    except GateError:
        int8_path.unlink()  # never left where the wheel or the card could pick it up
        raise
    return {
        "file": {"file": int8_path.name, "sha256": sha256_of(int8_path), "bytes": int8_path.stat().st_size},
        "quantization": {
            **made,
            "gates": {
                "rule": "the same verdict as the float32 model (muffin, chihuahua or neither, as Classifier "
                "computes it) on every dataset photo; on every sample picture, neither wherever float32 says neither; "
                "the augmented copies' differences counted; on every dataset photo, the heatmap Classifier gives at "
                f"least {HEATMAP_MIN_SIMILARITY} cosine-similar to float32's",
                "gated_outputs": list(GATED_OUTPUTS),
                **gates,
            },
        },
    }
