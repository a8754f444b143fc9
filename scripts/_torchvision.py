"""ImageNet classifiers of the paper's families from torchvision and timm, exported to ONNX.

``export_imagenet(family, arch, out, weights=...)`` builds the architecture with torchvision
(``resnet18``, ``vgg16``, ``shufflenet_v2_x1_0``, ...) or timm (``legacy_seresnet50``, ...), loads
weights, folds BatchNorm into the convs unless asked to keep it, exports with
:func:`_onnx_export.export_onnx`, checks ONNX Runtime against torch, and writes the preprocessing
into the model's metadata. Weights:

- ``None``: the library's random initialization (``torch.manual_seed(0)``), for layer tables only;
  the metadata says ``"weights": "random"``;
- ``"default"`` or a published weights name (torchvision ``IMAGENET1K_V1``, timm tag ``in1k``):
  the published file, downloaded by ``torch.hub`` into its cache (``$TORCH_HOME/hub/checkpoints``)
  and checked against the hash prefix in its URL; without internet, one :class:`ExportError`;
- a file path: a ``torch.save`` state dict loaded with ``strict=True``.

torchvision note: PyPI's torchvision wheels carry C++ ops (``nms``, ``roi_align``) built against
PyPI's CUDA torch; beside a CPU torch build they fail to load and ``import torchvision`` raises
``RuntimeError: operator torchvision::nms does not exist``. The classification models are pure
Python, so :func:`torchvision_models` then imports the package without running its
``__init__`` (which registers those ops); nothing here uses the C++ ops.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import math
import re
import socket
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.error import URLError
from urllib.parse import urlparse

import torch
from _onnx_export import (
    DEFAULT_OPSET,
    ExportError,
    ExportSummary,
    count_ops,
    export_onnx,
    load_state_dict_strict,
    ort_max_abs_diff,
    parameter_count,
    read_state_dict,
    save_model,
    sha256_file,
)
from torch import nn

__all__ = [
    "FAMILIES",
    "TIMM_ARCHS",
    "TORCHVISION_ARCHS",
    "TORCHVISION_PREPROCESS",
    "build_model",
    "export_imagenet",
    "fold_batchnorm",
    "published_weights",
    "timm_module",
    "torchvision_models",
]

#: The architectures ``export_models.py torchvision --arch`` offers (the paper's ResNet, VGG and
#: ShuffleNetV2 families and their siblings).
TORCHVISION_ARCHS = (
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
    "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0",
)  # fmt: skip

#: ``export_models.py timm --arch``: SE-ResNet50. ``legacy_seresnet50`` is the original SENet
#: layout whose ``in1k`` weights are the Cadene ``pretrainedmodels`` port (top-5 93.75%, the
#: paper's 93.76%); ``seresnet50`` is timm's ResNet with SE blocks (same parameter count).
TIMM_ARCHS = ("legacy_seresnet50", "seresnet50")

FAMILIES = {"torchvision": TORCHVISION_ARCHS, "timm": TIMM_ARCHS}

_IMAGENET_MEAN = [0.485, 0.456, 0.406]
_IMAGENET_STD = [0.229, 0.224, 0.225]

#: ``onnxnoise.preprocess`` of torchvision's classic ImageNet recipe (the ``IMAGENET1K_V1`` weights):
#: short side 256 (bilinear), center crop 224, ``(x / 255 - mean) / std``. Used for random weights
#: and ``--weights FILE``; published weights carry their own recipe (ResNet50 ``IMAGENET1K_V2``: 232).
TORCHVISION_PREPROCESS: dict[str, Any] = {
    "preset": "torchvision",
    "resize": 256,
    "crop": 224,
    "interpolation": "bilinear",
    "mean": _IMAGENET_MEAN,
    "std": _IMAGENET_STD,
    "scale": 1 / 255,
}

#: ONNX Runtime vs torch logits: accepted |difference| per unit of the largest |logit| (at least 1).
_RELATIVE_TOLERANCE = 1e-4


def _import_quietly(name: str) -> ModuleType:
    """Import ``name`` without the ``torch.jit.script_method`` DeprecationWarnings its modules raise on import."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script_method.* is deprecated", category=DeprecationWarning)
        return importlib.import_module(name)


def torchvision_models() -> ModuleType:
    """``torchvision.models``, also where torchvision's C++ ops cannot load (see the module docstring).

    Raises:
        ExportError: if torchvision is not installed.
    """
    try:
        return _import_quietly("torchvision.models")
    except ModuleNotFoundError as exc:
        if exc.name != "torchvision":
            raise
        msg = "torchvision is not installed; install the export extra: pip install torch==2.13.0 -e '.[export]'"
        raise ExportError(msg) from exc
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
    spec = importlib.util.find_spec("torchvision")
    package = importlib.util.module_from_spec(spec)
    sys.modules["torchvision"] = package  # its __init__ is not run: no C++ op registration
    try:
        version = importlib.import_module("torchvision.version")
        package.__version__ = version.__version__
        return _import_quietly("torchvision.models")
    except BaseException:
        del sys.modules["torchvision"]
        raise


def timm_module() -> ModuleType:
    """``timm`` (imports torchvision through :func:`torchvision_models` first).

    Raises:
        ExportError: if timm is not installed.
    """
    torchvision_models()
    try:
        return _import_quietly("timm")
    except ModuleNotFoundError as exc:
        if exc.name != "timm":
            raise
        msg = "timm is not installed; install the export extra: pip install torch==2.13.0 -e '.[export]'"
        raise ExportError(msg) from exc


def build_model(family: str, arch: str) -> nn.Module:
    """The architecture with its library's random initialization (seed 0), eval mode, 1000 classes.

    Raises:
        ExportError: for an unknown family or architecture.
    """
    if arch not in FAMILIES.get(family, ()):
        msg = f"unknown {family} architecture {arch!r}; choose one of {', '.join(FAMILIES.get(family, ()))}"
        raise ExportError(msg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if family == "torchvision":
            return torchvision_models().get_model(arch, weights=None).eval()
        return timm_module().create_model(arch, pretrained=False).eval()


def _timm_preprocess(cfg: dict[str, Any]) -> dict[str, Any]:
    """timm's eval transform as ``onnxnoise.preprocess``: resize ``floor(crop / crop_pct)``, crop."""
    crop = int(cfg["input_size"][-1])
    return {
        "preset": "torchvision",
        "resize": math.floor(crop / float(cfg.get("crop_pct") or 0.875)),
        "crop": crop,
        "interpolation": str(cfg.get("interpolation") or "bilinear"),
        "mean": [float(m) for m in cfg["mean"]],
        "std": [float(s) for s in cfg["std"]],
        "scale": 1 / 255,
    }


def published_weights(family: str, arch: str, name: str) -> tuple[str, str, dict[str, Any]]:
    """``(weights name, url, onnxnoise.preprocess)`` of published weights.

    Args:
        family: ``torchvision`` or ``timm``.
        arch: An architecture of that family.
        name: ``default`` (the library's default weights), a torchvision weights name
            (``IMAGENET1K_V1``) or a timm tag (``in1k``, ``a1_in1k``).

    Raises:
        ExportError: if there are no such weights (the message lists the names there are).
    """
    if family == "torchvision":
        enum = torchvision_models().get_model_weights(arch)
        choices = [member.name for member in enum]
        if name != "default" and name not in choices:
            msg = f"{arch} has no published weights {name!r}; choose default, {', '.join(choices)} or a state_dict FILE"
            raise ExportError(msg)
        weights = enum.DEFAULT if name == "default" else enum[name]
        transform = weights.transforms()
        preprocess = {
            **TORCHVISION_PREPROCESS,
            "resize": int(transform.resize_size[0]),
            "crop": int(transform.crop_size[0]),
            "interpolation": transform.interpolation.value,
            "mean": [float(m) for m in transform.mean],
            "std": [float(s) for s in transform.std],
        }
        return weights.name, weights.url, preprocess
    timm = timm_module()
    tags = [full.split(".", 1)[1] for full in timm.list_pretrained(f"{arch}.*")]
    tag = tags[0] if name == "default" and tags else name.removeprefix(f"{arch}.")
    if tag not in tags:
        msg = f"{arch} has no published timm weights {name!r}; choose default, {', '.join(tags)} or a state_dict FILE"
        raise ExportError(msg)
    cfg = timm.models.get_pretrained_cfg(f"{arch}.{tag}").to_dict()
    if not cfg.get("url"):
        msg = (f"timm publishes {arch}.{tag} on the Hugging Face hub only; save its state_dict "
               "with timm and pass `--weights FILE`")
        raise ExportError(msg)
    return tag, cfg["url"], _timm_preprocess(cfg)


#: Seconds one network wait of a weights download may last (torch.hub's urlopen passes no timeout).
DOWNLOAD_TIMEOUT_S = 60.0


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    """Sockets opened inside get ``seconds`` as their timeout (a stalled server raises TimeoutError)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _download(url: str, label: str) -> tuple[dict[str, torch.Tensor], Path]:
    """Fetch a published state dict into ``torch.hub``'s cache (as ``load_state_dict_from_url`` does).

    The file lands in ``$TORCH_HOME/hub/checkpoints`` (reused when already there) and is checked,
    downloaded or found there, against the SHA-256 prefix in its name (``resnet18-f37072fd.pth``). Returns the state dict and
    the cached file.
    """
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    match = re.search(r"-([a-f0-9]{6,})\.", path.name)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with _socket_timeout(DOWNLOAD_TIMEOUT_S):
                torch.hub.download_url_to_file(url, str(path), match.group(1) if match else None, progress=True)
        except (URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
            msg = (f"could not download the published {label} weights from {url} ({reason}); without "
                   f"internet, fetch that file elsewhere and pass `--weights FILE` (or put it in {path.parent})")
            raise ExportError(msg) from exc
        except RuntimeError as exc:  # download_url_to_file: 'invalid hash value (expected ..., got ...)'
            msg = f"the {label} weights downloaded from {url} do not match the hash in the file name: {exc}"
            raise ExportError(msg) from exc
    elif match and not sha256_file(path).startswith(match.group(1)):
        # a file already in the cache gets the same check a download does: the name promises its hash
        msg = (f"{path} does not match the SHA-256 prefix {match.group(1)} in its name (sha256 "
               f"{sha256_file(path)[:16]}...): it is not the published {label} file; delete it and fetch the "
               "published one, or pass your file with `--weights FILE`")
        raise ExportError(msg)
    return read_state_dict(path, f"downloaded {label} weights file"), path


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every BatchNorm folded into the conv that feeds it.

    ``torch.fx.experimental.optimization.fuse`` traces the data flow and applies
    ``fuse_conv_bn_eval`` (``W' = W * gamma / sqrt(var + eps)``,
    ``b' = (b - mean) * gamma / sqrt(var + eps) + beta``); the convs keep their module names.

    Raises:
        ExportError: if a BatchNorm is left that does not follow a conv alone.
    """
    fuse = _import_quietly("torch.fx.experimental.optimization").fuse  # imports torch.utils.mkldnn
    folded = fuse(model.eval())
    left = [name for name, module in folded.named_modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    if left:
        msg = f"cannot fold {len(left)} BatchNorm (first: {left[0]}) into a conv; pass --keep-batchnorm"
        raise ExportError(msg)
    return folded


def _weights(family: str, arch: str, model: nn.Module, weights: str | Path | None) -> tuple[dict, dict]:
    """Load ``weights`` into ``model``; returns ``(source entries, onnxnoise.preprocess)``."""
    preprocess = (TORCHVISION_PREPROCESS if family == "torchvision"
                  else _timm_preprocess(model.pretrained_cfg))
    if weights is None:
        return {"weights": "random", "seed": 0}, dict(preprocess)
    text = str(weights)
    if family == "torchvision":
        names = {member.name for member in torchvision_models().get_model_weights(arch)}
    else:
        names = {full.split(".", 1)[1] for full in timm_module().list_pretrained(f"{arch}.*")}
    if text == "default" or text.removeprefix(f"{arch}.") in names:
        name, url, preprocess = published_weights(family, arch, text)
        state, path = _download(url, f"{arch} {name}")
        load_state_dict_strict(model, state, f"the published {arch} {name} weights", arch)
        return {"weights": name, "url": url, "sha256": sha256_file(path)}, preprocess
    path = Path(weights)
    if not path.exists():
        choices = ", ".join(["default", *sorted(names)])
        msg = f"weights file not found: {text!r}; `--weights` takes {choices} or a state_dict file"
        raise ExportError(msg)
    state = read_state_dict(path, "weights file")
    load_state_dict_strict(model, state, f"weights file {text!r}", arch)
    return {"weights": path.name, "sha256": sha256_file(path)}, dict(preprocess)


def _library_version(family: str) -> str:
    """Version of the library that built the architecture (e.g. ``0.28.0+cu130``)."""
    if family == "torchvision":
        torchvision_models()
        return str(getattr(sys.modules["torchvision"], "__version__", "unknown"))
    return str(getattr(timm_module(), "__version__", "unknown"))


def export_imagenet(
    family: str,
    arch: str,
    out: str | Path,
    *,
    weights: str | Path | None = None,
    keep_batchnorm: bool = False,
    opset: int = DEFAULT_OPSET,
) -> ExportSummary:
    """Export a torchvision or timm ImageNet classifier to ONNX.

    The ONNX file has input ``input`` ``(N, 3, crop, crop) float32 NCHW`` (RGB,
    ``(x / 255 - mean) / std``) and output ``logits`` ``(N, 1000) float32`` in torchvision's class
    order; ``N`` is dynamic. ``metadata_props``: ``onnxnoise.preprocess`` (JSON ``DataConfig``
    fields: resize, crop, interpolation, mean, std, scale) and ``onnxnoise.source`` (JSON: family,
    architecture, library version, ``weights`` = ``random`` / the published name / the file name,
    its url or sha256, ``batchnorm`` = ``kept`` / ``folded``).

    Args:
        family: ``torchvision`` or ``timm``.
        arch: One of :data:`TORCHVISION_ARCHS` / :data:`TIMM_ARCHS`.
        out: Destination ``.onnx`` file (written atomically; parent folders are created).
        weights: ``None`` (random, layer tables only), ``"default"``, a published weights name,
            or a ``torch.save`` state dict file.
        keep_batchnorm: Keep BatchNormalization ops (the paper's layer tables count them) instead
            of folding them into the convs (as deployed).
        opset: ONNX opset (18 or newer).

    Raises:
        ExportError: unknown architecture or weights name, a download that fails, a weights file
            that is missing or does not fit, an unwritable ``out``, or ONNX Runtime logits that
            differ from torch's by more than 1e-4 of the largest |logit| (at least 1e-4).
    """
    model = build_model(family, arch)
    source, preprocess = _weights(family, arch, model, weights)
    export_model = model if keep_batchnorm else fold_batchnorm(model)
    source.update({
        "family": family,
        "architecture": arch,
        family: _library_version(family),
        "batchnorm": "kept" if keep_batchnorm else "folded",
    })
    bn_text = ("BatchNormalization kept as separate ops" if keep_batchnorm
               else "BatchNormalization folded into the conv weights and biases")
    weights_text = ("RANDOM weights (seed 0): for layer tables only, accuracy is chance"
                    if source["weights"] == "random" else f"weights {source['weights']}")
    crop = int(preprocess["crop"])
    doc = (f"ImageNet {arch} ({family} {source[family]}), {weights_text}; {bn_text}. Input 'input' "
           f"(N, 3, {crop}, {crop}) float32 NCHW, RGB, resize {preprocess['resize']} "
           f"{preprocess['interpolation']}, center crop {crop}, (x / 255 - mean) / std; output 'logits' "
           "(N, 1000) float32 in torchvision's ImageNet class order.")
    proto = export_onnx(
        export_model,
        torch.zeros(2, 3, crop, crop),
        opset=opset,
        doc_string=doc,
        metadata={
            "onnxnoise.preprocess": json.dumps(preprocess, sort_keys=True),
            "onnxnoise.source": json.dumps(source, sort_keys=True),
        },
    )
    max_abs_diff, largest = ort_max_abs_diff(proto, model, (2, 3, crop, crop))
    tolerance = _RELATIVE_TOLERANCE * max(1.0, largest)
    if not max_abs_diff <= tolerance:
        msg = f"ONNX Runtime logits differ from torch by {max_abs_diff:.3g} (> {tolerance:.3g})"
        raise ExportError(msg)
    try:
        path = save_model(proto, out)
    except OSError as exc:
        msg = f"cannot write {str(out)!r}: {exc.strerror or exc}"
        raise ExportError(msg) from exc
    return ExportSummary(path, count_ops(proto), parameter_count(proto), max_abs_diff, source["weights"])
