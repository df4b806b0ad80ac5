"""The model files `make bench` measures besides the app's, built once into the cache by builders' own code
(`python -m benchmarks.models WHAT`, in a process of its own: it imports TensorFlow):
- an InceptionV3 with random weights (as fast as a trained one) and builders.model's head, saved and exported as
  builders.model does;
- the app's int8 model with its depthwise convolutions kept in float32 too (builders.quantize, calibrated on the
  same photos): whether quantizing them pays.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

from benchmarks.paths import CACHE, LOGS, PACKAGE_MODEL, ROOT
from benchmarks.processes import BenchError, reap, start
from muffin_v_chihuahua.card import ModelCard, ModelFilesError

INCEPTION_DIR = CACHE / "inception-v3-random"
FLOAT_DEPTHWISE = "onnx-int8, depthwise convolutions in float32"
FLOAT_DEPTHWISE_FILE = CACHE / "int8-float-depthwise.onnx"
FLOAT_DEPTHWISE_STAMP = CACHE / "int8-float-depthwise.source"  # the float32 model's SHA-256 it was made from


def build_inception(out_dir: Path) -> None:
    """builders.backbones.inception_v3 with random weights and builders.model's head, saved and exported as
    builders.model does; card.json (written last) makes the folder a model folder."""
    from builders import backbones, neither
    from builders import model as builder
    from builders.data import sha256_of

    base = backbones.inception_v3(None)
    head = np.random.default_rng(0).normal(0, 0.01, base.outputs[0].shape[-1])
    model = builder.assemble(base, head, 0.0)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(out_dir / builder.MODEL_FILE)
    builder.export_onnx(model, out_dir / builder.ONNX_FILE, np.zeros((1, 299, 299, 3), np.float32))
    card = json.loads((PACKAGE_MODEL / "card.json").read_text())
    shutil.copy(PACKAGE_MODEL / card["imagenet_class_names"], out_dir)
    del card["quantization"]  # float32 only: both onnx contenders run the .onnx
    # The "neither" rule's references in this model's own feature space: its features of the same photos.
    references = out_dir / neither.REFERENCES_FILE
    photos, labels, _ = builder.load_photos(PACKAGE_MODEL.parent / "data", (299, 299))
    classes = card["neither"]["references"]["rows"]  # in the order their rows stand
    chosen = np.concatenate([np.flatnonzero(labels == builder.LABELS.index(label)) for label in classes])
    np.save(references, neither.unit(model.predict(photos[chosen], batch_size=8, verbose=0)[4]).astype(np.float32))
    card["neither"]["references"]["sha256"] = sha256_of(references)
    files = {"keras": out_dir / builder.MODEL_FILE, "onnx": out_dir / builder.ONNX_FILE}
    card.update(
        backbone="inception-v3, random weights (benchmark only)",
        input_size=[299, 299],
        files={
            key: {"file": path.name, "sha256": sha256_of(path), "bytes": path.stat().st_size}
            for key, path in files.items()
        },
        heatmap={**card["heatmap"], "shape": list(model.outputs[2].shape[1:])},
    )
    (out_dir / "card.json").write_text(json.dumps(card, indent=2) + "\n")


def build_float_depthwise(out_path: Path) -> None:
    """builders.quantize on the app's float32 model and dataset photos, its depthwise convolutions kept in float32."""
    from builders import quantize
    from builders.model import load_photos

    card = json.loads((PACKAGE_MODEL / "card.json").read_text())
    photos, _, _ = load_photos(PACKAGE_MODEL.parent / "data", tuple(card["input_size"]))
    quantize.quantize(PACKAGE_MODEL / card["files"]["onnx"]["file"], out_path, photos, depthwise_in_float=True)


def build(what: str, out: Path, timeout: float) -> None:
    builder = start([sys.executable, "-m", "benchmarks.models", what, out], f"build-{what}", cwd=ROOT)
    reap(builder, timeout)
    if builder.returncode != 0:
        raise BenchError(f"building {what} failed: see {LOGS}/build-{what}.log")


def ensure_inception() -> str:
    try:  # a folder from an earlier run, if its card still reads as the app's ModelCard (card.py's schema)
        ModelCard.from_file(INCEPTION_DIR / "card.json")
        return "reused"
    except ModelFilesError:
        pass
    shutil.rmtree(INCEPTION_DIR, ignore_errors=True)
    build("inception", INCEPTION_DIR, timeout=900)
    return "built"


def ensure_float_depthwise() -> str:
    """Built again whenever the app's float32 model changes; none when the app's model has no int8 file."""
    card = json.loads((PACKAGE_MODEL / "card.json").read_text())
    if "onnx-int8" not in card["files"]:
        return "not built (the model has no int8 file)"
    source = card["files"]["onnx"]["sha256"]
    if FLOAT_DEPTHWISE_FILE.exists() and FLOAT_DEPTHWISE_STAMP.exists() and FLOAT_DEPTHWISE_STAMP.read_text() == source:
        return "reused"
    build("float-depthwise", FLOAT_DEPTHWISE_FILE, timeout=900)
    FLOAT_DEPTHWISE_STAMP.write_text(source)
    return "built"


if __name__ == "__main__":
    what, out = sys.argv[1], Path(sys.argv[2])
    {"inception": build_inception, "float-depthwise": build_float_depthwise}[what](out)
