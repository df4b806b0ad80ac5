"""The Open Inference Protocol's codec (muffin_v_chihuahua/service/inference_protocol_codec.py), on bytes alone:
a request's header and binary data split, its image elements (base64 JSON or binary) within the limits, the
outputs asked for, and answers encoded as JSON or binary; every refusal a ProtocolError that says what is wrong."""

from __future__ import annotations

import base64
import json
import math
import struct
from dataclasses import fields

import pytest

from muffin_v_chihuahua.classifier import Label, Prediction
from muffin_v_chihuahua.service.inference_protocol_codec import (
    HEADER_LIMIT,
    OUTPUT_NOTES,
    OUTPUT_TENSORS,
    ProtocolError,
    binary_response,
    body_limit,
    encode_outputs,
    parse_request,
    split_request,
)
from tests.servers import image_input

MAX_BYTES, MAX_FILES = 1000, 4
TINY = base64.b64encode(b"x").decode()
LABELS = (Label("bagel", 0.5), Label("Chihuahua", 0.25), Label("pretzel", 0.125))
MUFFIN = Prediction("muffin", 0.75, LABELS, 0.875)
NEITHER = Prediction("neither", None, LABELS, 0.25, "it looks more like a bagel")


def binary(elements: list[bytes], size: int | None = None) -> tuple[dict, bytes]:
    """A binary tensor data request: its header and the elements' raw bytes (binary_data_size `size` if given)."""
    raw = b"".join(struct.pack("<I", len(element)) + element for element in elements)
    tensor = {"name": "image", "datatype": "BYTES", "shape": [len(elements)]}
    tensor["parameters"] = {"binary_data_size": len(raw) if size is None else size}
    return {"inputs": [tensor]}, raw


def parse(header: dict, blobs: bytes = b""):
    return parse_request(header, blobs, MAX_BYTES, MAX_FILES)


# ----- the request: header and binary data ---------------------------------------------------------------


def test_a_json_request_is_its_header_alone():
    assert split_request(b'{"inputs": []}', None) == ({"inputs": []}, b"")


def test_a_binary_request_is_split_where_its_header_length_says():
    assert split_request(b'{"id": "a"}\x00\x01', "11") == ({"id": "a"}, b"\x00\x01")


@pytest.mark.parametrize(
    ("body", "length", "words"),
    [
        (b"{not json", None, "not valid json"),
        (b"\xff\xfe", None, "not valid json"),
        (b"[]", None, "json object"),
        (b"{}", "1000", "inference-header-content-length: '1000'"),
        (b"{}", "two", "inference-header-content-length: 'two'"),
    ],
    ids=["not-json", "not-utf-8", "not-an-object", "length-past-the-body", "length-not-a-number"],
)
def test_a_request_that_cannot_be_split_is_a_400(body, length, words):
    with pytest.raises(ProtocolError) as refused:
        split_request(body, length)
    assert refused.value.status == 400 and words in str(refused.value).lower()


# ----- the input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("parameters", [{}, {"content_type": "base64"}], ids=["plain", "content-type-base64"])
def test_base64_elements_are_the_images(parameters):
    data, outputs, binary_outputs = parse({"inputs": [image_input([b"one", b"two"], **parameters)]})
    assert data == [b"one", b"two"]
    assert outputs == list(OUTPUT_TENSORS) and binary_outputs == dict.fromkeys(OUTPUT_TENSORS, False)


def test_base64_elements_nested_one_deep_are_flattened():
    tensor = {**image_input([b"one", b"two"]), "data": [[TINY], [TINY]]}
    assert parse({"inputs": [tensor]})[0] == [b"x", b"x"]


def test_binary_elements_are_the_images():
    header, raw = binary([b"one", b""])
    assert parse(header, raw)[0] == [b"one", b""]


def tensor(**fields) -> dict:
    return {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [TINY], **fields}]}


BAD_REQUESTS = {
    "no-inputs": ({}, b"", 400, "'inputs' must be a list"),
    "unknown-input": (tensor(name="picture"), b"", 400, "unknown input 'picture'"),
    "input-twice": ({"inputs": tensor()["inputs"] * 2}, b"", 400, "more than once"),
    "wrong-datatype": (tensor(datatype="FP32", data=[1.0]), b"", 400, "datatype bytes"),
    "wrong-shape": (tensor(shape=[1, 224]), b"", 400, "shape [n]"),
    "shape-not-data": (tensor(shape=[2]), b"", 400, "1 elements"),
    "too-many-images": ({"inputs": [image_input([b"x"] * (MAX_FILES + 1))]}, b"", 413, f"at most {MAX_FILES}"),
    "not-base64": (tensor(data=["not base64!"]), b"", 400, "image[0]: not a base64"),
    "no-data": (tensor(data=None), b"", 400, "needs 'data'"),
    "other-content-type": (tensor(parameters={"content_type": "str"}), b"", 400, "content_type 'str'"),
    "parameters-not-an-object": (tensor(parameters=[]), b"", 400, "parameters must be a json object"),
    "base64-over-the-limit": (
        {"inputs": [image_input([bytes(MAX_BYTES + 1)])]},
        b"",
        413,
        f"image[0]: the image of {MAX_BYTES + 1:,} bytes is larger than the limit",
    ),
    "binary-size-mismatch": (binary([b"x"], size=99)[0], binary([b"x"])[1], 400, "binary_data_size 99"),
    "binary-and-data": (
        {"inputs": [{**binary([b"x"])[0]["inputs"][0], "data": [TINY]}]},
        binary([b"x"])[1],
        400,
        "both 'data' and binary_data_size",
    ),
    "binary-without-size": (tensor(), b"\x00", 400, "no input has a binary_data_size"),
    "binary-more-elements": (
        {"inputs": [{**binary([b"x", b"y"])[0]["inputs"][0], "shape": [1]}]},
        binary([b"x", b"y"])[1],
        400,
        "has more elements",
    ),
    "binary-ends-in-a-length": (*binary([b"x"], size=7)[:1], struct.pack("<I", 1) + b"x" + b"\x00\x00", 400, "ends"),
    # The element's length says more than the limit: refused from it, before its bytes.
    "binary-over-the-limit": (
        binary([b"x"], size=8)[0],
        struct.pack("<I", 11 * 1024 * 1024) + b"\xff\xd8\xff\xe0",
        413,
        "image[0]: the image of 11,534,336 bytes",
    ),
    "unknown-output": ({**tensor(), "outputs": [{"name": "label"}]}, b"", 400, "unknown output 'label'"),
    "outputs-not-a-list": ({**tensor(), "outputs": {"name": "verdict"}}, b"", 400, "'outputs' must be a list"),
    "binary-output-not-a-bool": (
        {**tensor(), "parameters": {"binary_data_output": "yes"}},
        b"",
        400,
        "binary_data_output must be true or false",
    ),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_a_bad_request_is_refused_saying_what_is_wrong(case):
    header, blobs, status, words = BAD_REQUESTS[case]
    with pytest.raises(ProtocolError) as refused:
        parse(header, blobs)
    assert refused.value.status == status and words.lower() in str(refused.value).lower(), str(refused.value)


def test_the_outputs_asked_for_in_order_each_binary_as_asked():
    header = {
        **tensor(),
        "outputs": [{"name": "reason"}, {"name": "verdict", "parameters": {"binary_data": True}}],
        "parameters": {"binary_data_output": False},
    }
    assert parse(header)[1:] == (["reason", "verdict"], {"reason": False, "verdict": True})


def test_the_largest_body_holds_the_largest_images_in_base64_and_the_header():
    assert body_limit(MAX_BYTES, MAX_FILES) == MAX_FILES * (4 * math.ceil(MAX_BYTES / 3) + 8) + HEADER_LIMIT
    largest = json.dumps({"inputs": [image_input([bytes(MAX_BYTES)] * MAX_FILES)]}).encode()
    assert len(largest) <= body_limit(MAX_BYTES, MAX_FILES)


# ----- the answer ----------------------------------------------------------------------------------------


def test_json_outputs_are_the_predictions_with_neither_s_probability_null():
    tensors, tail = encode_outputs([MUFFIN, NEITHER], list(OUTPUT_TENSORS), dict.fromkeys(OUTPUT_TENSORS, False))
    assert tail == []
    by_name = {output["name"]: output for output in tensors}
    assert list(by_name) == list(OUTPUT_TENSORS)
    assert by_name["verdict"] == {"name": "verdict", "datatype": "BYTES", "shape": [2], "data": ["muffin", "neither"]}
    assert by_name["probability"]["data"] == [0.75, None]
    assert by_name["evidence"]["data"] == [0.875, 0.25]
    assert by_name["imagenet_labels"]["shape"] == [2, 3]
    assert by_name["imagenet_labels"]["data"] == ["bagel", "Chihuahua", "pretzel"] * 2
    assert by_name["imagenet_probabilities"]["data"] == [0.5, 0.25, 0.125] * 2
    assert by_name["reason"]["data"] == ["", "it looks more like a bagel"]


def test_binary_outputs_are_length_prefixed_strings_and_little_endian_floats():
    tensors, tail = encode_outputs(
        [MUFFIN, NEITHER], ["verdict", "probability"], {"verdict": True, "probability": True}
    )
    assert [t["parameters"]["binary_data_size"] for t in tensors] == [len(part) for part in tail]
    assert tail[0] == struct.pack("<I", 6) + b"muffin" + struct.pack("<I", 7) + b"neither"
    first, second = struct.unpack("<2f", tail[1])
    assert first == 0.75 and math.isnan(second)
    content, head_length = binary_response({"outputs": tensors}, tail)
    assert json.loads(content[:head_length]) == {"outputs": tensors} and content[head_length:] == b"".join(tail)


# Which outputs carry each of Prediction's fields (Prediction is the one source of a prediction's fields): a field
# added to Prediction fails this test until it is placed here, as outputs or as one /v2 does not send.
OUTPUTS_OF = {
    "verdict": ["verdict"],
    "probability": ["probability"],
    "imagenet": ["imagenet_labels", "imagenet_probabilities"],
    "evidence": ["evidence"],
    "reason": ["reason"],
    "heatmap": [],  # /predict?heatmap=true sends it; the protocol's outputs are fixed tensors per image
    "heatmap_class": [],
}


def test_every_field_of_a_prediction_has_its_outputs_and_every_output_its_field():
    assert list(OUTPUTS_OF) == [field.name for field in fields(Prediction)]
    assert sorted(OUTPUT_TENSORS) == sorted(name for names in OUTPUTS_OF.values() for name in names)
    assert set(OUTPUT_NOTES) == set(OUTPUT_TENSORS)
