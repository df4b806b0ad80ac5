"""One contender loaded in a worker process, timing its calls when the parent asks (`python -m benchmarks.contenders
TASK`): an engine through Classifier.predict, the seed's way, or this CPU's limits.

It calls each of its calls twice (load, allocate, trace every shape), prints its info as a JSON line, then answers
each request line {"call": name, "runs": n} with the seconds of n calls, or with the call's result for a call that
is not timed (a profile).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import models, roofline
from benchmarks.paths import PACKAGE_MODEL, PHOTO

# Each engine contender: (engine, precision). "onnx" is the default (the gated int8 model when the card has it).
ENGINES = {"onnx": ("onnx", "auto"), "onnx-float32": ("onnx", "float32"), "keras": ("keras", "auto")}
BATCHES = (8, 32)
MATMUL_SIZE = 2048  # square matrices: large enough for OpenBLAS and ONNX Runtime to run at full rate on all cores
# The copy that measures the bandwidth: arrays the size of these models' activations at batch 1 (EfficientNet-Lite0's
# largest is 1.2 MB in int8, 4.8 MB in float32), which live in the caches as the nodes' tensors do; past the last
# level cache the copy runs several times slower, and nodes would seem to beat their limit.
COPY_BYTES = 2 * 1024 * 1024
# Calls that are asked for their result, once, not timed.
PROFILES = "profiles"
# ONNX Runtime quantizes a float convolution's weights itself when it sits between QDQ pairs: off, a convolution the
# file keeps in float32 runs in float32.
OWN_WEIGHT_QUANTIZATION = "WeightBiasQuantization"
WEIGHT_QUANTIZATION_OFF = "onnx-int8, ORT's weight quantization off"


def phone_photo() -> bytes:
    """PHOTO as a phone saves a photo (12 megapixels, JPEG): made here, as the tests make theirs."""
    from PIL import Image

    from tests.corpus import phone_jpeg

    return phone_jpeg(Image.open(PHOTO))


def engine_calls(model_dir: Path | None, contender: str) -> tuple[dict, dict]:
    """Classifier.predict on one decoded photo, on its bytes (with images.decode), on a 12-MP phone photo's bytes,
    and on batches; its info is the model file it runs, as the card names it (onnx-int8, onnx, keras).

    The default onnx contender on an int8 model also runs the int8 file and the same model with its depthwise
    convolutions in float32 (benchmarks.models), both in bare sessions with ONNX Runtime's own weight quantization
    off: the difference is the depthwise convolutions' precision alone."""
    from muffin_v_chihuahua import engines, images
    from muffin_v_chihuahua.classifier import Classifier

    engine, precision = ENGINES[contender]
    classifier = Classifier(engine, model_dir, precision)
    data, phone = PHOTO.read_bytes(), phone_photo()
    array = images.decode(data, classifier.input_size)
    calls = {
        "predict": lambda: classifier.predict([array]),
        "decode+predict": lambda: classifier.predict([images.decode(data, classifier.input_size)]),
        "decode+predict 12-MP": lambda: classifier.predict([images.decode(phone, classifier.input_size)]),
        **{f"batch {size}": (lambda size=size: classifier.predict([array] * size)) for size in BATCHES},
    }
    if engine != "onnx":
        return calls, {"runs": classifier.engine}
    onnx_file = (model_dir or PACKAGE_MODEL) / classifier.card.files[classifier.engine].file
    files = {classifier.engine: (onnx_file, ())}
    if contender == "onnx" and classifier.engine == "onnx-int8" and model_dir is None:
        files[WEIGHT_QUANTIZATION_OFF] = (onnx_file, (OWN_WEIGHT_QUANTIZATION,))
        files[models.FLOAT_DEPTHWISE] = (models.FLOAT_DEPTHWISE_FILE, (OWN_WEIGHT_QUANTIZATION,))
        for name, (path, disabled) in list(files.items())[1:]:
            calls[name] = session_call(path, disabled, array)
    calls[PROFILES] = lambda: roofline.profiles(files, array)
    # The "neither" decision alone, on the photo's own outputs (a second session of the same file gives them).
    outputs = engines.load(engine, onnx_file).run(array[np.newaxis])
    label = classifier.card.class_names[int(np.argmax(outputs.verdict[0]))]
    rule = classifier.neither_rule
    calls["neither decision"] = lambda: rule.judge(outputs.imagenet_logits[0], outputs.features[0], label)
    return calls, {"runs": classifier.engine}


def session_call(model_path: Path, disabled_optimizers: tuple[str, ...], array: np.ndarray):
    """One run of the model file on the photo, in a bare session with the engine's options."""
    import onnxruntime

    from muffin_v_chihuahua.engines import OnnxEngine

    session = onnxruntime.InferenceSession(
        str(model_path),
        OnnxEngine.session_options(),
        providers=["CPUExecutionProvider"],
        disabled_optimizers=list(disabled_optimizers),
    )
    feed = {session.get_inputs()[0].name: array[np.newaxis]}
    return lambda: session.run(None, feed)


def seed_calls(model_dir: Path | None) -> tuple[dict, dict]:
    """The seed's way, one image at a time: PIL opens and resizes, np.expand_dims, Keras model.predict."""
    import keras
    from PIL import Image

    folder = model_dir or PACKAGE_MODEL
    card = json.loads((folder / "card.json").read_text())
    model = keras.models.load_model(folder / card["files"]["keras"]["file"], compile=False)
    size = tuple(card["input_size"])
    phone = phone_photo()

    def seed_way(photo):
        image = Image.open(photo).resize(size)
        return model.predict(np.expand_dims(np.array(image), axis=0), verbose=0)

    array = np.expand_dims(np.array(Image.open(PHOTO).resize(size)), axis=0)
    calls = {
        "predict": lambda: model.predict(array, verbose=0),
        "decode+predict": lambda: seed_way(PHOTO),
        "decode+predict 12-MP": lambda: seed_way(io.BytesIO(phone)),
    }
    return calls, {}


def limit_calls() -> tuple[dict, dict]:
    """This CPU's limits: numpy's float32 matrix multiply on all cores; ONNX Runtime's uint8 x int8 one (the kernels
    behind the int8 model's convolutions); a numpy copy (the bandwidth)."""
    from threadpoolctl import threadpool_info

    rng = np.random.default_rng(0)
    a, b = (rng.random((MATMUL_SIZE, MATMUL_SIZE), dtype=np.float32) for _ in range(2))
    source, target = np.ones(COPY_BYTES, np.uint8), np.empty(COPY_BYTES, np.uint8)
    blas = next(
        (
            f"{pool['internal_api']} {pool['version']} ({pool.get('architecture', '?')} kernel, "
            f"{pool['num_threads']} threads)"
            for pool in threadpool_info()
            if pool["user_api"] == "blas"
        ),
        "?",
    )
    calls = {"matmul": lambda: a @ b, "int8 matmul": onnx_int8_matmul(rng), "copy": lambda: np.copyto(target, source)}
    return calls, {"blas": blas}


def onnx_int8_matmul(rng: np.random.Generator):
    """A call of ONNX Runtime's MatMulInteger on MATMUL_SIZE-square uint8 activations and int8 weights (the U8S8
    form the int8 model uses), in a session with the engine's options."""
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    from muffin_v_chihuahua.engines import OnnxEngine

    shape = [MATMUL_SIZE, MATMUL_SIZE]
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["x", "weights"], ["y"])],
        "int8-matmul",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, shape)],
        [helper.make_tensor_value_info("y", TensorProto.INT32, shape)],
        [numpy_helper.from_array(rng.integers(-128, 128, shape, dtype=np.int8), "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), OnnxEngine.session_options(), providers=["CPUExecutionProvider"]
    )
    x = rng.integers(0, 256, shape, dtype=np.uint8)
    return lambda: session.run(None, {"x": x})


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="benchmarks.contenders")
    parser.add_argument("task", choices=(*ENGINES, "seed", "limits"))
    parser.add_argument("--model-dir", type=Path)
    args = parser.parse_args(argv)
    if args.task == "limits":
        calls, info = limit_calls()
    elif args.task == "seed":
        calls, info = seed_calls(args.model_dir)
    else:
        calls, info = engine_calls(args.model_dir, args.task)
    timed = {name: call for name, call in calls.items() if name != PROFILES}
    for call in [*timed.values(), *timed.values()]:
        call()
    print(json.dumps({**info, "calls": list(timed)}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        call = calls[request["call"]]
        if request["call"] == PROFILES:
            print(json.dumps(call()), flush=True)
            continue
        seconds = []
        for _ in range(request["runs"]):
            started = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - started)
        print(json.dumps(seconds), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
