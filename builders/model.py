"""ImageNet backbone + a muffin/chihuahua head trained on the demo photos -> one model, as .h5 and .onnx, and its card.

    python -m builders.model --backbone auto --data muffin_v_chihuahua/data --out muffin_v_chihuahua/model

The saved model is made of built-in Keras layers only (loading it runs no custom code). Input: RGB
0..255 at the backbone's size (preprocessing is inside). Outputs, in order: the 1000 ImageNet
probabilities, the [chihuahua, muffin] probabilities, their class activation maps (N, h, w, 2), the 1000 ImageNet
logits and the pooled features (the last two for the "neither" rule). The .onnx is the same model for ONNX
Runtime; the build stops unless both files give the same verdicts, probabilities and maps on every photo. Beside
it, the int8 model (builders/quantize.py), kept only when it gives the float32 verdicts on every dataset photo and
calls neither every sample picture float32 does.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.metadata
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss, recall_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from builders import backbones, neither, quantize
from builders.data import LABELS, dataset_digest, read_checksums, sha256_of, verify
from muffin_v_chihuahua import __version__, engines, images
from muffin_v_chihuahua.card import ModelCard, ModelFile
from muffin_v_chihuahua.evidence import EvidenceRule

MODEL_FILE = "muffin_v_chihuahua.h5"
ONNX_FILE = "muffin_v_chihuahua.onnx"
AGREEMENT_TOLERANCE = 1e-4  # largest probability difference allowed between the .h5 and the .onnx
# The maps are logit contributions, not probabilities: their largest difference is judged against the largest
# value of the map it is in.
HEATMAP_AGREEMENT_TOLERANCE = 1e-4
CARD_FILE = "card.json"
CLASS_NAMES_FILE = "imagenet_classes.json"
FOLDS = 5
L2 = 1.0  # ridge strength on standardised features; CV accuracy is flat from 0.1 to 10


def load_photos(data_dir: Path, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode every photo exactly as the app will: (arrays, labels as indices into LABELS, names)."""
    names = sorted(read_checksums(data_dir))
    arrays = np.stack([images.decode((data_dir / name).read_bytes(), size) for name in names])
    labels = np.array([LABELS.index(name.split("/")[0]) for name in names])
    return arrays, labels, names


def load_augmented(data_dir: Path, names: list[str], size: tuple[int, int]) -> list[np.ndarray]:
    """Per augmentation (neither.AUGMENTATIONS), every photo's model input, in the order of `names`."""
    per_photo = [neither.augmented((data_dir / name).read_bytes(), size) for name in names]
    return [np.stack(copies) for copies in zip(*per_photo, strict=True)]


def backbone_looks(base: keras.Model, arrays: np.ndarray, labels: list[str]) -> neither.Looks:
    pooled, _, _, logits = base.predict(arrays, batch_size=16, verbose=0)
    return neither.Looks(pooled, logits, labels)


def make_head() -> Pipeline:
    """Standardise, then L2-regularised logistic regression: minimises the summed log loss + L2 / 2 * |weights|^2."""
    # newton-cg: deterministic Newton steps, fast with more features than photos; it leaves the bias unpenalised.
    logistic = LogisticRegression(C=1 / L2, solver="newton-cg", tol=1e-10)
    return make_pipeline(StandardScaler(), logistic)


def fold_scaler(head: Pipeline) -> tuple[np.ndarray, float]:
    """The fitted pipeline's decision function as raw-feature (weights, bias): w.(x - mean) / scale + b."""
    scaler, logistic = head.named_steps["standardscaler"], head.named_steps["logisticregression"]
    weights = logistic.coef_[0] / scaler.scale_
    return weights, float(logistic.intercept_[0] - weights @ scaler.mean_)


def evaluate(features: np.ndarray, labels: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Stratified k-fold cross-validation of the head: each photo is predicted by a head that never saw it."""
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=0)  # a fixed shuffle, so every build agrees
    probabilities = cross_val_predict(make_head(), features, labels, cv=folds, method="predict_proba")
    predicted = probabilities.argmax(axis=1)
    recalls = recall_score(labels, predicted, labels=range(len(LABELS)), average=None)
    return {
        "method": f"stratified {FOLDS}-fold cross-validation of the head (shuffled, random_state 0): every figure "
        "is from out-of-fold predictions, each photo predicted once by a head fitted without it",
        "folds": FOLDS,
        "photos": len(labels),
        "accuracy": float(accuracy_score(labels, predicted)),
        "recall": {label: float(recall) for label, recall in zip(LABELS, recalls, strict=True)},
        "log_loss": float(log_loss(labels, probabilities)),
        "misclassified": [name for name, label, guess in zip(names, labels, predicted, strict=True) if label != guess],
    }


def assemble(base: keras.Model, weights: np.ndarray, bias: float) -> keras.Model:
    """Backbone [pooled features, ImageNet, feature map, ImageNet logits] + Dense softmax head -> Model [ImageNet,
    verdict, heatmap, ImageNet logits, pooled features] (engines.ModelOutputs).

    heatmap is each class's activation map (Zhou et al. 2016, no gradients needed): the head's weights for the
    class applied at every cell of the feature map, a 1x1 convolution. The pooling is an average, so a class's
    logit is the mean of its map plus the head's bias: each cell's value is its share of the head's score.
    """
    features, imagenet, feature_map, logits = base.outputs
    class_weights = np.stack([-weights / 2, weights / 2], axis=1)  # (features, classes)
    head = keras.layers.Dense(len(LABELS), activation="softmax", name="verdict")
    verdict = head(features)
    # softmax([-z/2, z/2]) = [1 - sigmoid(z), sigmoid(z)]: the logistic model, as two classes.
    head.set_weights([class_weights, np.array([-bias / 2, bias / 2])])
    activation_maps = keras.layers.Conv2D(len(LABELS), 1, use_bias=False, name="heatmap")
    heatmap = activation_maps(feature_map)
    activation_maps.set_weights([class_weights[np.newaxis, np.newaxis]])
    return keras.Model(base.input, [imagenet, verdict, heatmap, logits, features], name="muffin_v_chihuahua")


class AgreementError(RuntimeError):
    """The .onnx does not compute what the .h5 computes."""


def export_onnx(model: keras.Model, path: Path, sample: np.ndarray) -> None:
    """Keras' own ONNX export (through tf2onnx), batch dimension left dynamic."""
    model(sample)  # export refuses a model that has never been called
    model.export(str(path), format="onnx", verbose=False)


def check_agreement(h5_path: Path, onnx_path: Path, photos: np.ndarray) -> dict[str, Any]:
    """Run both saved files on every photo: same verdicts, probabilities within AGREEMENT_TOLERANCE and heatmaps
    within HEATMAP_AGREEMENT_TOLERANCE of each map's largest value."""
    from muffin_v_chihuahua.engines import Engine, KerasEngine, ModelOutputs, OnnxEngine  # the code the app runs

    def run_all(engine: Engine) -> ModelOutputs:
        batches = [engine.run(photos[i : i + 16]) for i in range(0, len(photos), 16)]
        return ModelOutputs(*(np.concatenate(parts) for parts in zip(*batches, strict=True)))

    ours, theirs = run_all(KerasEngine(h5_path)), run_all(OnnxEngine(onnx_path))
    difference = float(max(np.abs(ours.imagenet - theirs.imagenet).max(), np.abs(ours.verdict - theirs.verdict).max()))
    scale = np.abs(ours.heatmap).max(axis=(1, 2, 3), keepdims=True)  # each photo's largest map value
    heatmap_difference = float((np.abs(ours.heatmap - theirs.heatmap) / scale).max())
    same_verdicts = bool((ours.verdict.argmax(1) == theirs.verdict.argmax(1)).all())
    agreement = {
        "photos": len(photos),
        "same_verdicts": same_verdicts,
        "max_probability_difference": difference,
        "tolerance": AGREEMENT_TOLERANCE,
        "max_heatmap_difference": heatmap_difference,  # relative to the largest value of the photo's maps
        "heatmap_tolerance": HEATMAP_AGREEMENT_TOLERANCE,
        "onnxruntime": importlib.metadata.version("onnxruntime"),
    }
    if not same_verdicts or difference >= AGREEMENT_TOLERANCE or heatmap_difference >= HEATMAP_AGREEMENT_TOLERANCE:
        raise AgreementError(f"the .onnx disagrees with the .h5: {agreement}")
    return agreement


def library_versions() -> dict[str, str]:
    return {
        name: importlib.metadata.version(name)
        for name in ("tensorflow-cpu", "keras", "tf2onnx", "onnx", "onnxruntime", "numpy", "Pillow", "scikit-learn")
    }


def build(backbone: str, data_dir: Path, out_dir: Path) -> ModelCard:
    started = time.monotonic()
    name, reason = backbones.choose(backbone)
    print(f"model: backbone {name} ({reason})")
    checksums = verify(data_dir)
    base = backbones.build(name)
    size = tuple(base.input_shape[2:0:-1])  # (width, height)
    photos, labels, photo_names = load_photos(data_dir, size)
    pooled, _, _, logits = base.predict(photos, batch_size=16, verbose=0)
    features = pooled.astype(np.float64)  # scikit-learn would otherwise fit float32 features in float32
    evaluation = evaluate(features, labels, photo_names)
    weights, bias = fold_scaler(make_head().fit(features, labels))
    print(f"model: {FOLDS}-fold cross-validated accuracy {evaluation['accuracy']:.3f} on {len(labels)} photos")
    model = assemble(base, weights, bias)
    imagenet_names = backbones.imagenet_class_names()

    def looks_of(arrays: np.ndarray) -> neither.Looks:
        outputs = engines.ModelOutputs(*model.predict(arrays, batch_size=16, verbose=0))
        return neither.Looks(outputs.features, outputs.imagenet_logits, [LABELS[i] for i in outputs.verdict.argmax(1)])

    true_labels = [LABELS[i] for i in labels]
    augmented = load_augmented(data_dir, photo_names, size)
    augmented_looks = [backbone_looks(base, copies, true_labels) for copies in augmented]
    neither_rule, references = neither.calibrate(
        neither.Looks(pooled, logits, true_labels),
        photo_names,
        augmented_looks,
        looks_of,
        size,
        neither.ImageNet(imagenet_names, *backbones.imagenet_classifier(base)),
    )
    print(
        f"model: 'neither' below evidence {neither_rule['threshold']:.2f} against the strongest ImageNet rival: flags "
        f"{neither_rule['dataset_flagged_share']:.1%} of dataset photos and {neither_rule['augmented_flagged_share']:.1%}"
        f" of augmented copies, catches {neither_rule['near_misses_caught_share']:.0%} of near misses and "
        f"{neither_rule['heldout_negatives_caught_share']:.0%} of held-out negatives (cross-validated)"
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    model_path, onnx_path = out_dir / MODEL_FILE, out_dir / ONNX_FILE
    model.save(model_path)
    export_onnx(model, onnx_path, photos[:1])
    agreement = check_agreement(model_path, onnx_path, photos)
    print(
        f"model: .h5 and .onnx agree on {len(photos)} photos (largest difference "
        f"{agreement['max_probability_difference']:.1e}, heatmaps {agreement['max_heatmap_difference']:.1e})"
    )
    references_path = out_dir / neither.REFERENCES_FILE
    np.save(references_path, references, allow_pickle=False)
    neither_rule["references"]["sha256"] = sha256_of(references_path)
    negatives = neither.negative_photos()
    int8 = quantize.build(
        onnx_path,
        {
            "dataset": (photo_names, photos),
            "augmented": (
                [f"{name} ({how})" for how in neither.AUGMENTATIONS for name in photo_names],
                np.concatenate(augmented),
            ),
            "negatives": (list(negatives), np.stack([images.decode(data, size) for data in negatives.values()])),
        },
        engines.ModelOutputs._fields,
        EvidenceRule.from_card(neither_rule, references, imagenet_names),
        LABELS,
    )
    gates = int8["quantization"]["gates"]
    print(
        f"model: int8 {int8['file']['file']} ({int8['file']['bytes'] / 1e6:.1f} MB) gives the float32 verdicts on "
        f"{gates['dataset']['photos']} dataset photos (heatmaps at least {gates['dataset']['heatmap_similarity']['min']:.3f}"
        f" alike), on {gates['negatives']['same_verdicts']} of {gates['negatives']['photos']} sample pictures (never "
        f"letting one through that float32 calls neither) and on {gates['augmented']['same_verdicts']} of "
        f"{gates['augmented']['photos']} augmented copies"
    )
    (out_dir / CLASS_NAMES_FILE).write_text(json.dumps(imagenet_names, indent=0))
    files = {
        engine: ModelFile(path.name, sha256_of(path), path.stat().st_size)
        for engine, path in (("keras", model_path), ("onnx", onnx_path))
    } | {engines.MODEL_FILES["onnx"]["int8"]: ModelFile(**int8["file"])}
    imagenet_class_names_sha256 = sha256_of(out_dir / CLASS_NAMES_FILE)
    built_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    card = ModelCard(
        name="muffin-v-chihuahua",
        version=__version__,
        model_version=model_version(files, imagenet_class_names_sha256, built_at),
        backbone=name,
        built_at=built_at,
        input_size=size,
        class_names=tuple(LABELS),
        files=files,
        imagenet_class_names=CLASS_NAMES_FILE,
        imagenet_class_names_sha256=imagenet_class_names_sha256,
        neither=neither_rule,
        evaluation=evaluation,
        dataset={"sha256": dataset_digest(checksums), "photos": len(checksums), "credit": "data/SOURCE.md"},
        more={
            "backbone_weights": backbones.WEIGHTS_SOURCES[name],
            "input": "RGB float32 0..255, NHWC; preprocessing is inside the model",
            "outputs": list(engines.ModelOutputs._fields),
            "heatmap": {
                "shape": list(model.outputs[2].shape[1:]),
                "meaning": "class activation map (Zhou et al. 2016): each class's head weights applied to each cell "
                "of the backbone's last feature map, before pooling; a class's logit is its map's mean plus the head's "
                "bias. Rows top to bottom over the whole input, which is the whole photo resized without cropping",
            },
            "agreement": agreement,
            "quantization": int8["quantization"],
            "head": {
                "type": "logistic regression on the standardised pooled features, the scaler folded into its weights",
                "l2": L2,
                "solver": "scikit-learn LogisticRegression, newton-cg",
            },
            "libraries": library_versions(),
            "build_seconds": round(time.monotonic() - started, 1),
        },
    )
    card.write(out_dir / CARD_FILE)
    print(f"model: wrote {model_path}, {onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB) and {out_dir / CARD_FILE}")
    return card


def model_version(files: Mapping[str, ModelFile], imagenet_class_names_sha256: str, built_at: str) -> str:
    """The model's own version, apart from the app's (the card's "version"), so that a model folder can be released
    by itself: its build date, then a short digest of every file the card names, e.g. 2026.12.01+3f9a1c2e."""
    digests = sorted([entry.sha256 for entry in files.values()] + [imagenet_class_names_sha256])
    built = datetime.datetime.fromisoformat(built_at)
    return f"{built:%Y.%m.%d}+{hashlib.sha256(''.join(digests).encode()).hexdigest()[:8]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", choices=("auto", *backbones.BACKBONES), default="auto")
    parser.add_argument("--data", type=Path, default=Path("muffin_v_chihuahua/data"))
    parser.add_argument("--out", type=Path, default=Path("muffin_v_chihuahua/model"))
    args = parser.parse_args(argv)
    try:
        build(args.backbone, args.data, args.out)
    except (backbones.BackboneUnavailable, AgreementError, quantize.GateError) as error:
        print(f"model: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
