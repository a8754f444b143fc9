"""Small ONNX models built with onnx.helper for tests (no torch needed), and datasets for them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def tiny_cnn(*, seed: int = 0, num_classes: int = 10, batch: int | str = "N", opset: int = 17,
             channels: int = 3, size: int = 8) -> onnx.ModelProto:
    """Conv(3->4, 3x3, bias) -> BatchNormalization -> Relu -> GlobalAveragePool -> Flatten -> Gemm(4->C).

    Layers (graph order): conv (weight, bias), bn (scale, bias, mean, var), fc (weight, bias).
    Also holds an int64 shape tensor and a float scalar that are not parameters.
    """
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (4, channels, 3, 3)).astype(np.float32), "conv.weight"),
        numpy_helper.from_array(rng.normal(0, 0.1, (4,)).astype(np.float32), "conv.bias"),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, (4,)).astype(np.float32), "bn.scale"),
        numpy_helper.from_array(rng.normal(0, 0.1, (4,)).astype(np.float32), "bn.bias"),
        numpy_helper.from_array(rng.normal(0, 0.1, (4,)).astype(np.float32), "bn.mean"),
        numpy_helper.from_array(rng.uniform(0.01, 0.03, (4,)).astype(np.float32), "bn.var"),
        numpy_helper.from_array(rng.normal(0, 1.0, (num_classes, 4)).astype(np.float32), "fc.weight"),
        numpy_helper.from_array(rng.normal(0, 0.1, (num_classes,)).astype(np.float32), "fc.bias"),
        numpy_helper.from_array(np.array([0, -1], dtype=np.int64), "flat.shape"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "conv.weight", "conv.bias"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["b"], name="bn"),
        helper.make_node("Relu", ["b"], ["r"], name="relu"),
        helper.make_node("Mul", ["r", "one"], ["r1"], name="scale_by_one"),
        helper.make_node("GlobalAveragePool", ["r1"], ["p"], name="pool"),
        helper.make_node("Reshape", ["p", "flat.shape"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, channels, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, num_classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# ---------------------------------------------------------------- Conv+BN residual network


def smooth_images(n: int, *, seed: int = 0, size: int = 16) -> np.ndarray:
    """``(n, size, size, 3) uint8`` NHWC RGB images with per-image structure.

    A random base colour, a blocky low-frequency random field of random amplitude and a
    little pixel noise: unlike uniform noise images, their pooled features vary enough from
    image to image for a random network to spread its predictions over the classes.
    """
    rng = np.random.default_rng(seed)
    block = max(size // 4, 1)
    color = rng.uniform(0, 255, (n, 1, 1, 3))
    coarse = rng.normal(0, 1, (n, -(-size // block), -(-size // block), 3))
    field = coarse.repeat(block, axis=1).repeat(block, axis=2)[:, :size, :size]
    amplitude = rng.uniform(0, 80, (n, 1, 1, 1))
    noise = rng.normal(0, 10, (n, size, size, 3))
    return np.clip(color + amplitude * field + noise, 0, 255).astype(np.uint8)


def raw_input(images: np.ndarray) -> np.ndarray:
    """The float input :func:`conv_bn_resnet` expects: the ``raw`` preset (pixels / 255, NCHW)."""
    from onnxnoise.data import normalize, resolve_data_config

    return normalize(images, resolve_data_config("raw"))


def _run(model: onnx.ModelProto, x: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
    """Run ``model`` on the CPU EP and return the named tensors (graph outputs or not)."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in outputs if n not in known)
    for out in probe.graph.output:
        if out.name not in known:
            out.type.tensor_type.elem_type = TensorProto.FLOAT
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(outputs, {model.graph.input[0].name: x})


def _set_init(model: onnx.ModelProto, name: str, array: np.ndarray) -> None:
    for tensor in model.graph.initializer:
        if tensor.name == name:
            tensor.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
            return
    raise KeyError(name)


def _conv_bn(rng: np.random.Generator, prefix: str, cin: int, cout: int, k: int, *,
             bias: bool = False) -> list[onnx.TensorProto]:
    """Initializers of a Conv (He-normal weight, optional bias) and the BatchNormalization after it.

    BN mean/var are placeholders here; :func:`conv_bn_resnet` sets them from the statistics of
    calibration images, as training would, and the affine parameters are away from the identity.
    """
    fan_in = cin * k * k
    inits = [numpy_helper.from_array(rng.normal(0, np.sqrt(2.0 / fan_in), (cout, cin, k, k)).astype(np.float32),
                                     f"{prefix}.conv.weight")]
    if bias:
        inits.append(numpy_helper.from_array(rng.normal(0, 0.1, (cout,)).astype(np.float32), f"{prefix}.conv.bias"))
    inits += [
        numpy_helper.from_array(rng.uniform(0.6, 1.4, (cout,)).astype(np.float32), f"{prefix}.bn.scale"),
        numpy_helper.from_array(rng.normal(0, 0.2, (cout,)).astype(np.float32), f"{prefix}.bn.bias"),
        numpy_helper.from_array(np.zeros((cout,), np.float32), f"{prefix}.bn.mean"),
        numpy_helper.from_array(np.ones((cout,), np.float32), f"{prefix}.bn.var"),
    ]
    return inits


def _conv_bn_nodes(prefix: str, x: str, out: str, k: int, *, stride: int = 1,
                   bias: bool = False) -> list[onnx.NodeProto]:
    conv_in = [x, f"{prefix}.conv.weight"] + ([f"{prefix}.conv.bias"] if bias else [])
    bn_in = [f"{prefix}.c", *(f"{prefix}.bn.{r}" for r in ("scale", "bias", "mean", "var"))]
    return [
        helper.make_node("Conv", conv_in, [f"{prefix}.c"], name=f"{prefix}.conv", kernel_shape=[k, k],
                         pads=[k // 2] * 4, strides=[stride, stride]),
        helper.make_node("BatchNormalization", bn_in, [out], name=f"{prefix}.bn", epsilon=1e-5),
    ]


#: BN layers of :func:`conv_bn_resnet`, in graph order.
CONV_BN_RESNET_BLOCKS = ("stem", "block1.a", "block1.b", "block2.a", "block2.b", "block2.down")


def conv_bn_resnet(*, seed: int = 0, num_classes: int = 10, batch: int | str = "N", opset: int = 17,
                   size: int = 16, width: int = 8) -> onnx.ModelProto:
    """A small Conv+BatchNormalization residual network (no torch), deterministic in ``seed``.

    ``input [N, 3, size, size] float32`` (``raw`` preprocessing, see :func:`raw_input`) ->

    * stem: Conv(3 -> w, 3x3, pad 1, with bias) + BN + Relu;
    * block1 (identity shortcut): Conv(w -> w, 3x3) + BN + Relu, Conv(w -> w, 3x3) + BN,
      Add(block input), Relu;
    * block2 (1x1 projection shortcut, stride 2): Conv(w -> 2w, 3x3, stride 2) + BN + Relu,
      Conv(2w -> 2w, 3x3) + BN, shortcut Conv(w -> 2w, 1x1, stride 2) + BN, Add, Relu;
    * GlobalAveragePool -> Flatten -> Gemm(2w -> num_classes, transB=1) -> ``logits``.

    The shortcut comes after block2's main path in graph order, so the block input is live
    across every split inside the block. Layers (13, graph order): ``stem.conv``, ``stem.bn``,
    ``block1.a.conv``, ``block1.a.bn``, ``block1.b.conv``, ``block1.b.bn``, ``block2.a.conv``,
    ``block2.a.bn``, ``block2.b.conv``, ``block2.b.bn``, ``block2.down.conv``,
    ``block2.down.bn``, ``fc``. ``num_classes=11`` models a background class at output 0.

    Weights are random (He-normal convs), but like a trained network's: every BN's running
    mean/var are the per-channel statistics of its input over 256 :func:`smooth_images`
    (so mean != 0, var > 0 and not 1), and the Gemm is a random projection of the
    standardized pooled features, so the logits of each class have mean ~0 and std ~3 and
    predictions are spread over the classes.
    """
    rng = np.random.default_rng(seed)
    w = width
    inits = [
        *_conv_bn(rng, "stem", 3, w, 3, bias=True),
        *_conv_bn(rng, "block1.a", w, w, 3),
        *_conv_bn(rng, "block1.b", w, w, 3),
        *_conv_bn(rng, "block2.a", w, 2 * w, 3),
        *_conv_bn(rng, "block2.b", 2 * w, 2 * w, 3),
        *_conv_bn(rng, "block2.down", w, 2 * w, 1),
        numpy_helper.from_array(np.zeros((num_classes, 2 * w), np.float32), "fc.weight"),
        numpy_helper.from_array(np.zeros((num_classes,), np.float32), "fc.bias"),
    ]
    nodes = [
        *_conv_bn_nodes("stem", "input", "stem.b", 3, bias=True),
        helper.make_node("Relu", ["stem.b"], ["stem.out"], name="stem.relu"),
        # block1: identity shortcut
        *_conv_bn_nodes("block1.a", "stem.out", "block1.a.b", 3),
        helper.make_node("Relu", ["block1.a.b"], ["block1.a.out"], name="block1.a.relu"),
        *_conv_bn_nodes("block1.b", "block1.a.out", "block1.b.b", 3),
        helper.make_node("Add", ["block1.b.b", "stem.out"], ["block1.sum"], name="block1.add"),
        helper.make_node("Relu", ["block1.sum"], ["block1.out"], name="block1.relu"),
        # block2: stride 2, projection shortcut after the main path
        *_conv_bn_nodes("block2.a", "block1.out", "block2.a.b", 3, stride=2),
        helper.make_node("Relu", ["block2.a.b"], ["block2.a.out"], name="block2.a.relu"),
        *_conv_bn_nodes("block2.b", "block2.a.out", "block2.b.b", 3),
        *_conv_bn_nodes("block2.down", "block1.out", "block2.down.b", 1, stride=2),
        helper.make_node("Add", ["block2.b.b", "block2.down.b"], ["block2.sum"], name="block2.add"),
        helper.make_node("Relu", ["block2.sum"], ["block2.out"], name="block2.relu"),
        helper.make_node("GlobalAveragePool", ["block2.out"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_bn_resnet",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, num_classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8

    # "Training": running statistics from calibration images, in graph order, then the classifier.
    x = raw_input(smooth_images(256, seed=seed + 10_000, size=size))
    for prefix in CONV_BN_RESNET_BLOCKS:
        (act,) = _run(model, x, [f"{prefix}.c"])
        _set_init(model, f"{prefix}.bn.mean", act.mean(axis=(0, 2, 3)))
        _set_init(model, f"{prefix}.bn.var", act.var(axis=(0, 2, 3)) + 1e-3)
    (feats,) = _run(model, x, ["flat"])
    mu, sd = feats.mean(axis=0), feats.std(axis=0) + 1e-3
    proj = rng.normal(0, 3.0 / np.sqrt(2 * w), (num_classes, 2 * w)) / sd
    _set_init(model, "fc.weight", proj)
    _set_init(model, "fc.bias", -(proj @ mu) + rng.normal(0, 0.1, num_classes))
    onnx.checker.check_model(model)
    return model


@dataclass(frozen=True)
class LabeledSet:
    """A dataset written by :func:`labeled_npz` and what the clean model scores on it.

    Attributes:
        path: The ``.npz`` file (``images`` uint8 NHWC, ``labels`` int64, ``num_classes``).
        images: ``(n, H, W, 3) uint8``.
        labels: ``(n,) int64`` in label space (output index minus ``label_offset``).
        predictions: ``(n,)`` clean top-1 output indices.
        relabeled: ``(n,) bool``, the images whose label was drawn at random.
        top1_correct: Clean top-1 hits: exactly ``n - relabeled.sum()``.
        top5_correct: Clean top-5 hits (from the clean logits).
    """

    path: Path
    images: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray
    relabeled: np.ndarray
    top1_correct: int
    top5_correct: int

    @property
    def top1_pct(self) -> float:
        return 100.0 * self.top1_correct / len(self.labels)


def labeled_npz(model: onnx.ModelProto, path: str | Path, *, n: int = 200, relabel: float = 0.3, seed: int = 0,
                label_offset: int = 0, min_margin: float = 1e-3) -> LabeledSet:
    """Write a labeled ``.npz`` for ``model`` whose clean top-1 accuracy is known exactly.

    Images come from :func:`smooth_images`; only those whose clean top-1 logit beats the
    runner-up by at least ``min_margin`` are kept (so no float rounding, fusion or execution
    provider can change the clean prediction), and, with ``label_offset``, only those not
    predicted as a class below it (e.g. background). The label is the clean prediction,
    except on ``round(relabel * n)`` images chosen at random, whose label is drawn uniformly
    from the *other* classes. Clean top-1 is therefore exactly ``n - round(relabel * n)``
    (70% with the defaults).

    Args:
        model: A classifier taking :func:`raw_input` (e.g. :func:`conv_bn_resnet`).
        path: Where to write the ``.npz`` (read by :func:`onnxnoise.data.npz.load_npz`).
        n: Number of images.
        relabel: Fraction of images given a wrong, random label.
        seed: Seeds the images and the relabeling.
        label_offset: Output index of label 0 (1 for a background class at output 0).
        min_margin: Smallest top-1 minus top-2 logit gap of a kept image.
    """
    path = Path(path)
    size = model.graph.input[0].type.tensor_type.shape.dim[2].dim_value
    outputs = model.graph.output[0].type.tensor_type.shape.dim[1].dim_value
    num_classes = outputs - label_offset
    kept_images, kept_logits = [], []
    have, attempt = 0, 0
    while have < n:
        if attempt == 20:
            raise ValueError(f"could not find {n} images with a top-1 margin of {min_margin}")
        images = smooth_images(4 * n, seed=seed * 1000 + attempt, size=size)
        (logits,) = _run(model, raw_input(images), [model.graph.output[0].name])
        top2 = np.sort(logits, axis=1)[:, -2:]
        ok = (top2[:, 1] - top2[:, 0] >= min_margin) & (logits.argmax(axis=1) >= label_offset)
        kept_images.append(images[ok])
        kept_logits.append(logits[ok])
        have += int(ok.sum())
        attempt += 1
    images = np.concatenate(kept_images)[:n]
    logits = np.concatenate(kept_logits)[:n]
    predictions = logits.argmax(axis=1)
    labels = predictions.astype(np.int64) - label_offset
    rng = np.random.default_rng(seed + 1)
    relabeled = np.zeros(n, dtype=bool)
    relabeled[rng.choice(n, size=int(round(relabel * n)), replace=False)] = True
    for i in np.flatnonzero(relabeled):
        labels[i] = rng.choice([c for c in range(num_classes) if c != labels[i]])
    targets = labels + label_offset
    rank = (logits >= logits[np.arange(n), targets][:, None]).sum(axis=1) - 1
    np.savez(path, images=images, labels=labels, num_classes=np.int64(num_classes))
    return LabeledSet(
        path=path,
        images=images,
        labels=labels,
        predictions=predictions,
        relabeled=relabeled,
        top1_correct=int((rank < 1).sum()),
        top5_correct=int((rank < min(5, outputs)).sum()),
    )


def qdq_matmul(q: np.ndarray, scale: np.ndarray, zero: np.ndarray, bias_q: np.ndarray,
               bias_scale: float) -> onnx.ModelProto:
    """QDQ int8 classifier head: ``input (N, K) @ DQ(q (K, M), per-axis scale on axis 1) + DQ(bias int32 (M,))``."""
    inits = [
        numpy_helper.from_array(q, "Wq"),
        numpy_helper.from_array(scale.astype(np.float32), "Wq_scale"),
        numpy_helper.from_array(zero, "Wq_zp"),
        numpy_helper.from_array(bias_q, "bq"),
        numpy_helper.from_array(np.array(bias_scale, dtype=np.float32), "bq_scale"),
        numpy_helper.from_array(np.array(0, dtype=np.int32), "bq_zp"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["Wq", "Wq_scale", "Wq_zp"], ["W"], axis=1, name="dq_w"),
        helper.make_node("DequantizeLinear", ["bq", "bq_scale", "bq_zp"], ["b"], name="dq_b"),
        helper.make_node("MatMul", ["input", "W"], ["mm"], name="fc"),
        helper.make_node("Add", ["mm", "b"], ["logits"], name="fc_bias"),
    ]
    k, m = q.shape
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", k])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", m])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


#: Ways :func:`routed_classifier` stores its weight and brings it to its matrix op.
WEIGHT_ROUTES = ("direct", "transpose", "transpose-gemm", "reshape", "flatten", "squeeze", "unsqueeze", "chain",
                 "einsum", "bias-reshape")


def routed_classifier(route: str, *, seed: int = 0, classes: int = 10, size: int = 8) -> onnx.ModelProto:
    """A linear classifier ``Flatten(input [N, 3, size, size]) @ W + b`` whose weight reaches its op by ``route``.

    The layer is always named ``fc``; ``W`` has ``K = 3 size^2`` inputs and ``classes`` outputs,
    no zero (so a device model that zeroes every weight changes all ``K * classes`` values):

    * ``direct``: ``W [K, C]`` -> ``MatMul`` (output axis 1), bias ``Add``;
    * ``transpose``: ``W [C, K]`` -> ``Transpose`` -> ``MatMul`` (axis 0);
    * ``transpose-gemm``: ``W [C, K]`` -> ``Transpose`` -> ``Gemm`` (``transB=0``, bias input; axis 0);
    * ``reshape``: ``W [K C]`` (flat) -> ``Reshape [K, C]`` -> ``MatMul`` (no single axis: ``None``);
    * ``flatten``: ``W [C, 3, size, size]`` -> ``Flatten`` -> ``Gemm`` (``transB=1``; axis 0);
    * ``squeeze``: ``W [1, K, C]`` -> ``Squeeze(0)`` -> ``MatMul`` (axis 2);
    * ``unsqueeze``: ``W [K, C]`` -> ``Unsqueeze(0)`` -> ``MatMul``, bias ``Add``, ``Squeeze(0)`` of the logits (axis 2 of
      the ``[1, K, C]`` operand, 1 of ``W``);
    * ``chain``: ``W [C, 3, size^2]`` -> ``Reshape [C, K]`` -> ``Transpose`` -> ``Identity`` -> ``MatMul`` (axis 0);
    * ``einsum``: ``W [C, K]`` -> ``Einsum("nk,ck->nc")`` (TensorFlow ``EinsumDense``; axis 0), bias ``Add``;
    * ``bias-reshape``: ``W [K, C]`` -> ``MatMul`` (axis 1) -> ``Reshape [-1, C]`` -> bias ``Add`` (the bias Add is
      not directly after the MatMul, as TensorFlow writes a Dense layer over a sequence).
    """
    rng = np.random.default_rng(seed)
    k = 3 * size * size
    w = rng.normal(0, 1.0 / np.sqrt(k), (k, classes)).astype(np.float32)
    w[w == 0] = 1e-3
    b = rng.normal(0, 0.5, classes).astype(np.float32)
    stored = {"direct": w, "transpose": w.T, "transpose-gemm": w.T, "reshape": w.reshape(-1),
              "flatten": w.T.reshape(classes, 3, size, size), "squeeze": w[None], "unsqueeze": w,
              "chain": w.T.reshape(classes, 3, size * size), "einsum": w.T, "bias-reshape": w}[route]
    inits = [numpy_helper.from_array(np.ascontiguousarray(stored), "W"), numpy_helper.from_array(b, "b"),
             numpy_helper.from_array(np.array([k, classes], np.int64), "shape_kc"),
             numpy_helper.from_array(np.array([classes, k], np.int64), "shape_ck"),
             numpy_helper.from_array(np.array([-1, classes], np.int64), "shape_nc"),
             numpy_helper.from_array(np.array([0], np.int64), "axis0")]
    nodes = [helper.make_node("Flatten", ["input"], ["x"], name="flatten", axis=1)]
    matmul = [helper.make_node("MatMul", ["x", "Wv"], ["mm"], name="fc"),
              helper.make_node("Add", ["mm", "b"], ["logits"], name="fc_bias")]
    if route == "direct":
        nodes += [helper.make_node("MatMul", ["x", "W"], ["mm"], name="fc"),
                  helper.make_node("Add", ["mm", "b"], ["logits"], name="fc_bias")]
    elif route == "transpose":
        nodes += [helper.make_node("Transpose", ["W"], ["Wv"], name="w_t", perm=[1, 0]), *matmul]
    elif route == "transpose-gemm":
        nodes += [helper.make_node("Transpose", ["W"], ["Wv"], name="w_t", perm=[1, 0]),
                  helper.make_node("Gemm", ["x", "Wv", "b"], ["logits"], name="fc")]
    elif route == "reshape":
        nodes += [helper.make_node("Reshape", ["W", "shape_kc"], ["Wv"], name="w_r"), *matmul]
    elif route == "flatten":
        nodes += [helper.make_node("Flatten", ["W"], ["Wv"], name="w_f", axis=1),
                  helper.make_node("Gemm", ["x", "Wv", "b"], ["logits"], name="fc", transB=1)]
    elif route == "squeeze":
        nodes += [helper.make_node("Squeeze", ["W", "axis0"], ["Wv"], name="w_s"), *matmul]
    elif route == "unsqueeze":
        nodes += [helper.make_node("Unsqueeze", ["W", "axis0"], ["Wv"], name="w_u"),
                  helper.make_node("MatMul", ["x", "Wv"], ["mm"], name="fc"),
                  helper.make_node("Add", ["mm", "b"], ["biased"], name="fc_bias"),
                  helper.make_node("Squeeze", ["biased", "axis0"], ["logits"], name="squeeze_out")]
    elif route == "chain":
        nodes += [helper.make_node("Reshape", ["W", "shape_ck"], ["Wr"], name="w_r"),
                  helper.make_node("Transpose", ["Wr"], ["Wt"], name="w_t", perm=[1, 0]),
                  helper.make_node("Identity", ["Wt"], ["Wv"], name="w_i"), *matmul]
    elif route == "einsum":
        nodes += [helper.make_node("Einsum", ["x", "W"], ["mm"], name="fc", equation="nk,ck->nc"),
                  helper.make_node("Add", ["mm", "b"], ["logits"], name="fc_bias")]
    elif route == "bias-reshape":
        nodes += [helper.make_node("MatMul", ["x", "W"], ["mm"], name="fc"),
                  helper.make_node("Reshape", ["mm", "shape_nc"], ["mm_r"], name="fc_reshape"),
                  helper.make_node("Add", ["mm_r", "b"], ["logits"], name="fc_bias")]
    else:
        raise ValueError(f"unknown route {route!r}; one of {', '.join(WEIGHT_ROUTES)}")
    used = {name for node in nodes for name in node.input}
    return image_classifier(nodes, [t for t in inits if t.name in used], f"routed_{route}", size=size, classes=classes)


def image_classifier(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], name: str, *, size: int,
                     classes: int, metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    """A checked opset-17 model of ``nodes`` from ``input`` [N, 3, size, size] float32 to ``logits`` [N, classes]."""
    graph = helper.make_graph(nodes, name,
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    return model
