"""The Open Inference Protocol's (KServe v2) tensors to and from JSON or binary, for the service's /v2 routes
(inference_protocol.py); pure: no web framework, so that every rule is tested on bytes.

The input `image` is BYTES of shape [N]: one encoded image (JPEG, PNG, ...) per element, at most the
service's max_files of them, each at most its upload limit. In JSON each element is a base64 string (the
KServe convention; `"parameters": {"content_type": "base64"}` may say so); with the binary tensor data
extension (request header Inference-Header-Content-Length: the JSON header's length, the tensors' raw bytes
after it, `parameters.binary_data_size` per input) the elements are each a 4-byte little-endian length and
the bytes. OUTPUT_TENSORS below are the answers; a request's `outputs` chooses among them, and each is binary when
its `parameters.binary_data` (or the request's `parameters.binary_data_output`) is true.

A request the protocol refuses raises ProtocolError: 400 naming what is wrong (the element, where there is one),
413 for an image or too many images over the limits.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from muffin_v_chihuahua.classifier import TOP_LABELS, Prediction
from muffin_v_chihuahua.service.bodies import MULTIPART_OVERHEAD, too_large

HEADER_LENGTH = "Inference-Header-Content-Length"
INPUT = "image"
# The JSON header of a request (everything but its tensors) is refused above this size.
HEADER_LIMIT = MULTIPART_OVERHEAD


@dataclass(frozen=True)
class OutputTensor:
    datatype: str  # "BYTES" or "FP32"
    shape: tuple[int, ...]  # per image (N comes first)
    values: Callable[[Prediction], Any]  # one image's value(s)


OUTPUT_TENSORS: dict[str, OutputTensor] = {
    "verdict": OutputTensor("BYTES", (), lambda p: p.verdict),
    # NaN (null in JSON) when the verdict is "neither", which the head cannot judge.
    "probability": OutputTensor("FP32", (), lambda p: math.nan if p.probability is None else p.probability),
    "evidence": OutputTensor("FP32", (), lambda p: p.evidence),
    "imagenet_labels": OutputTensor("BYTES", (TOP_LABELS,), lambda p: [label.name for label in p.imagenet]),
    "imagenet_probabilities": OutputTensor(
        "FP32", (TOP_LABELS,), lambda p: [label.probability for label in p.imagenet]
    ),
    "reason": OutputTensor("BYTES", (), lambda p: p.reason or ""),  # "" unless the verdict is "neither"
}
OUTPUT_NOTES = {
    "verdict": "muffin, chihuahua or neither",
    "probability": "the head's probability of the verdict; NaN (null in JSON) when the verdict is neither",
    "evidence": "the head's class's probability against its strongest ImageNet rival",
    "imagenet_labels": "the top ImageNet labels, most likely first",
    "imagenet_probabilities": "their probabilities",
    "reason": "why the verdict is neither; empty otherwise",
}


class ProtocolError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def body_limit(max_bytes: int, max_files: int) -> int:
    """The largest infer request body: base64 makes an image a third larger, the JSON around the images is at
    most HEADER_LIMIT."""
    return max_files * (4 * math.ceil(max_bytes / 3) + 8) + HEADER_LIMIT


def split_request(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """A request's JSON header (an object) and the binary tensor data after it (b"" without the extension);
    header_length: the request's Inference-Header-Content-Length, if it has one."""
    if header_length is None:
        head, blobs = body, b""
    elif not header_length.strip().isdigit() or int(header_length) > len(body):
        raise ProtocolError(
            400, f"{HEADER_LENGTH}: {header_length!r} is not a length within the body's {len(body):,} bytes"
        )
    else:
        head, blobs = body[: int(header_length)], body[int(header_length) :]
    try:
        header = json.loads(head)
    except ValueError as problem:  # not JSON, or not UTF-8
        raise ProtocolError(400, f"the request header is not valid JSON: {problem}") from None
    if not isinstance(header, dict):
        raise ProtocolError(400, "the request header must be a JSON object with 'inputs'")
    return header, blobs


def _parameters(tensor: dict[str, Any], what: str) -> dict[str, Any]:
    parameters = tensor.get("parameters", {})
    if not isinstance(parameters, dict):
        raise ProtocolError(400, f"{what}'s parameters must be a JSON object")
    return parameters


def parse_request(
    header: dict[str, Any], blobs: bytes, max_bytes: int, max_files: int
) -> tuple[list[bytes], list[str], dict[str, bool]]:
    """The images, the output names asked for and whether each is binary; ProtocolError for a bad request."""
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not inputs or not all(isinstance(tensor, dict) for tensor in inputs):
        raise ProtocolError(400, f"'inputs' must be a list holding the input {INPUT!r}")
    names = [tensor.get("name") for tensor in inputs]
    if extra := [name for name in names if name != INPUT]:
        raise ProtocolError(400, f"unknown input {extra[0]!r}: the only input is {INPUT!r}")
    if len(names) > 1:
        raise ProtocolError(400, f"the input {INPUT!r} is given more than once")
    [tensor] = inputs
    if tensor.get("datatype") != "BYTES":
        raise ProtocolError(400, f"the input {INPUT!r} has datatype BYTES, not {tensor.get('datatype')!r}")
    shape = tensor.get("shape")
    if not (isinstance(shape, list) and len(shape) == 1 and isinstance(shape[0], int) and shape[0] >= 1):
        raise ProtocolError(400, f"the input {INPUT!r} has shape [N] (N images, N >= 1), not {shape!r}")
    count = shape[0]
    if count > max_files:
        raise ProtocolError(413, f"too many images: at most {max_files} per request, not {count}")
    parameters = _parameters(tensor, f"the input {INPUT!r}")
    size = parameters.get("binary_data_size")
    if size is not None:
        if "data" in tensor:
            raise ProtocolError(400, f"the input {INPUT!r} has both 'data' and binary_data_size")
        if not isinstance(size, int) or size != len(blobs):
            raise ProtocolError(
                400, f"the input {INPUT!r} says binary_data_size {size!r}, but {len(blobs):,} bytes follow the header"
            )
        data = _bytes_elements(blobs, count, max_bytes)
    else:
        if blobs:
            raise ProtocolError(400, f"{len(blobs):,} bytes follow the header, but no input has a binary_data_size")
        data = _base64_elements(tensor.get("data"), count, max_bytes, parameters.get("content_type"))
    return data, *_requested(header)


def _too_large(index: int, size: int, max_bytes: int) -> ProtocolError:
    return ProtocolError(413, f"{INPUT}[{index}]: {too_large('the image', max_bytes, size)}")


def _bytes_elements(blob: bytes, count: int, max_bytes: int) -> list[bytes]:
    """A binary BYTES tensor: each element a 4-byte little-endian length and that many bytes."""
    elements: list[bytes] = []
    offset = 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise ProtocolError(400, f"{INPUT}[{len(elements)}]: the binary data ends inside an element's length")
        (size,) = struct.unpack_from("<I", blob, offset)
        if len(elements) >= count:
            raise ProtocolError(400, f"the input {INPUT!r} has shape [{count}] but its binary data has more elements")
        if size > max_bytes:
            raise _too_large(len(elements), size, max_bytes)
        if offset + 4 + size > len(blob):
            raise ProtocolError(
                400, f"{INPUT}[{len(elements)}]: the binary data ends inside the element ({size:,} bytes declared)"
            )
        elements.append(blob[offset + 4 : offset + 4 + size])
        offset += 4 + size
    if len(elements) != count:
        raise ProtocolError(
            400, f"the input {INPUT!r} has shape [{count}] but its binary data has {len(elements)} elements"
        )
    return elements


def _base64_elements(data: Any, count: int, max_bytes: int, content_type: Any) -> list[bytes]:
    """JSON BYTES elements: base64 strings (KServe's convention), as a flat list or nested one deep."""
    if content_type not in (None, "base64"):
        raise ProtocolError(400, f"content_type {content_type!r} is not accepted for {INPUT!r}: send base64 strings")
    if isinstance(data, list) and all(isinstance(row, list) for row in data) and data:
        data = [element for row in data for element in row]
    if not isinstance(data, list) or not all(isinstance(element, str) for element in data):
        raise ProtocolError(400, f"the input {INPUT!r} needs 'data': a list of base64 strings (or binary data)")
    if len(data) != count:
        raise ProtocolError(400, f"the input {INPUT!r} has shape [{count}] but {len(data)} elements")
    elements = []
    for index, text in enumerate(data):
        if len(text) > 4 * math.ceil(max_bytes / 3) + 4:
            raise _too_large(index, len(text) * 3 // 4, max_bytes)
        try:
            element = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError(400, f"{INPUT}[{index}]: not a base64 string") from None
        if len(element) > max_bytes:
            raise _too_large(index, len(element), max_bytes)
        elements.append(element)
    return elements


def _requested(header: dict[str, Any]) -> tuple[list[str], dict[str, bool]]:
    """The outputs asked for (all of them without 'outputs'), in order, and whether each is to be binary."""
    default = _parameters(header, "the request").get("binary_data_output", False)
    if not isinstance(default, bool):
        raise ProtocolError(400, f"binary_data_output must be true or false, not {default!r}")
    asked = header.get("outputs")
    if asked is None:
        return list(OUTPUT_TENSORS), dict.fromkeys(OUTPUT_TENSORS, default)
    if not isinstance(asked, list) or not all(isinstance(tensor, dict) for tensor in asked):
        raise ProtocolError(400, "'outputs' must be a list of objects with a 'name'")
    names, binary = [], {}
    for tensor in asked:
        name = tensor.get("name")
        if name not in OUTPUT_TENSORS:
            raise ProtocolError(400, f"unknown output {name!r}: the outputs are {', '.join(OUTPUT_TENSORS)}")
        choice = _parameters(tensor, f"the output {name!r}").get("binary_data", default)
        if not isinstance(choice, bool):
            raise ProtocolError(400, f"the output {name!r}'s binary_data must be true or false, not {choice!r}")
        if name not in binary:
            names.append(name)
        binary[name] = choice
    return names, binary


def encode_outputs(
    predictions: Sequence[Prediction], names: list[str], binary: dict[str, bool]
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """The response's output tensors and, in the same order, the raw data of those sent as binary."""
    tensors, tail = [], []
    for name in names:
        output = OUTPUT_TENSORS[name]
        values = [output.values(prediction) for prediction in predictions]
        tensor: dict[str, Any] = {"name": name, "datatype": output.datatype, "shape": [len(values), *output.shape]}
        flat = [value for row in values for value in row] if output.shape else values
        if binary[name]:
            if output.datatype == "BYTES":
                raw = b"".join(struct.pack("<I", len(text.encode())) + text.encode() for text in flat)
            else:
                raw = np.asarray(flat, dtype="<f4").tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            tail.append(raw)
        elif output.datatype == "FP32":
            tensor["data"] = [None if math.isnan(value) else float(np.float32(value)) for value in flat]
        else:
            tensor["data"] = flat
        tensors.append(tensor)
    return tensors, tail


def binary_response(answer: dict[str, Any], tail: list[bytes]) -> tuple[bytes, int]:
    """A response with binary outputs: its JSON header (`answer`) then their raw data; and the header's length."""
    head = json.dumps(answer, allow_nan=False).encode()
    return head + b"".join(tail), len(head)
