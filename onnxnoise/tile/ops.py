"""A float matrix op split into tiles along its input rows: partial products, per-column ``w_max``, bias.

Input rows (the rows of the crossbar a weight occupies; aihwkit ``max_input_size``, CrossSim
array rows):

- ``Conv`` (weight ``[C_out, C_in/g, k...]``) and ``ConvTranspose`` (``[C_in, C_out/g, k...]``):
  ``C_in/g * prod(k)``. A tile holds whole kernels, at most ``max(1, R // prod(k))`` input channels
  of every group, the channels spread evenly over the fewest such tiles
  (:func:`onnxnoise.model.tiles.tile_chunks`, the rule the tile-column mapping shares), so a tile of a grouped conv gathers those channels of each group (``Gather`` on
  the input's axis 1) with the matching weight slice (``Slice`` on the weight's input-channel
  axis for Conv, ``Gather`` on axis 0 for ConvTranspose) and keeps the group count.
- ``Gemm`` (weight ``B``; ``alpha``, ``transA``, ``transB`` honoured) and ``MatMul`` (a 2-D weight
  as ``B`` ``[K, N]`` or as ``A`` ``[M, K]``): ``K``, cut the same way (``Slice`` on K);
  1,000 rows with ``R = 256`` give 4 tiles of 250 rows (aihwkit's equal parts).

``R = 0`` is one tile holding every row. Tiles slice the weight *tensor feeding the op* in the
graph (never a copy of an initializer), so a per-trial replacement of the initializer reaches
every tile. Output columns: Conv / ConvTranspose output channels, Gemm and ``MatMul`` with the
weight as ``B``: ``N``, with the weight as ``A``: ``M``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from onnxnoise.model.tiles import tile_chunks
from onnxnoise.tile.stages import Builder

__all__ = ["MATRIX_OPS", "AnalogOp", "plan_op"]

#: Float ops split into tiles (QLinear / Integer ops are expressed as these first).
MATRIX_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


@dataclass(frozen=True)
class AnalogOp:
    """One float matrix op and its tiles.

    Attributes:
        layer: The layer name.
        node: The float op (its attributes are copied to each tile's partial product).
        x: Activation input name; ``w``: weight input name (as the op reads it).
        w_value: The clean weight as the op sees it (float32).
        kind: ``conv``, ``conv_transpose``, ``gemm``, ``matmul_b`` or ``matmul_a``.
        chunks: Per tile, ``(start, stop)`` along the split units (channels per group, or K).
        unit_rows: Input rows per unit (``prod(kernel)`` for convs, 1 otherwise).
        column_shape: Shape of a per-column array that broadcasts against the op's output.
    """

    layer: str
    node: onnx.NodeProto
    x: str
    w: str
    w_value: np.ndarray
    kind: str
    chunks: tuple[tuple[int, int], ...]
    unit_rows: int
    column_shape: tuple[int, ...]

    @property
    def tiles(self) -> int:
        """Number of tiles."""
        return len(self.chunks)

    @property
    def columns(self) -> int:
        """Number of output columns."""
        return int(np.prod(self.column_shape))

    def rows(self, tile: int) -> int:
        """Input rows of one tile."""
        start, stop = self.chunks[tile]
        return (stop - start) * self.unit_rows

    def w_max(self, tile: int) -> np.ndarray:
        """``max|W|`` of one tile's weights per output column, float64 ``(columns,)`` (Gemm: times ``|alpha|``)."""
        w = np.abs(self.w_value.astype(np.float64))
        start, stop = self.chunks[tile]
        if self.kind == "conv":
            return w[:, start:stop].reshape(w.shape[0], -1).max(axis=1)
        if self.kind == "conv_transpose":
            group = _attr(self.node, "group", 1)
            sub = w[_group_index(w.shape[0] // group, group, start, stop)]
            return sub.reshape(group, stop - start, w.shape[1], -1).max(axis=(1, 3)).reshape(-1)
        if self.kind == "gemm":
            part = w[:, start:stop] if _attr(self.node, "transB", 0) else w[start:stop].T
            return part.max(axis=1) * abs(_attr(self.node, "alpha", 1.0))
        if self.kind == "matmul_b":
            return w[start:stop].max(axis=0)
        return w[:, start:stop].max(axis=1)

    def partial(self, b: Builder, x: str, tile: int) -> str:
        """Build one tile's partial product of activation ``x`` (no bias); returns its name."""
        start, stop = self.chunks[tile]
        whole = self.tiles == 1
        node = self.node
        if self.kind in ("conv", "conv_transpose"):
            group = _attr(node, "group", 1)
            per_group = self.w_value.shape[1] if self.kind == "conv" else self.w_value.shape[0] // group
            x_t, w_t = x, self.w
            if not whole:
                if group == 1:
                    x_t = _slice(b, x, start, stop, 1)
                else:
                    index = b.const(_group_index(per_group, group, start, stop), "channels", dtype=np.int64)
                    x_t = b.op("Gather", [x, index], "tile_input", axis=1)
                if self.kind == "conv":
                    w_t = _slice(b, self.w, start, stop, 1)
                elif group == 1:
                    w_t = _slice(b, self.w, start, stop, 0)
                else:
                    w_t = b.op("Gather", [self.w, index], "tile_weight", axis=0)
            return _copy(b, node, [x_t, w_t], "partial")
        if self.kind == "gemm":
            trans_a, trans_b = _attr(node, "transA", 0), _attr(node, "transB", 0)
            x_t = x if whole else _slice(b, x, start, stop, 0 if trans_a else 1)
            w_t = self.w if whole else _slice(b, self.w, start, stop, 1 if trans_b else 0)
            return b.op("Gemm", [x_t, w_t], "partial", alpha=float(_attr(node, "alpha", 1.0)),
                        transA=trans_a, transB=trans_b)
        if self.kind == "matmul_b":
            x_t = x if whole else _slice(b, x, start, stop, -1)
            w_t = self.w if whole else _slice(b, self.w, start, stop, 0)
            return b.op("MatMul", [x_t, w_t], "partial")
        x_t = x if whole else _slice(b, x, start, stop, -2)
        w_t = self.w if whole else _slice(b, self.w, start, stop, 1)
        return b.op("MatMul", [w_t, x_t], "partial")

    def add_bias(self, b: Builder, y: str) -> str:
        """Add the op's bias digitally after the tiles' sum: Conv ``B`` as ``[C, 1, ...]``, Gemm ``beta * C``."""
        node = self.node
        if self.kind in ("conv", "conv_transpose") and len(node.input) > 2 and node.input[2]:
            shape = b.const([-1] + [1] * (self.w_value.ndim - 2), "bias_shape", dtype=np.int64)
            return b.op("Add", [y, b.op("Reshape", [node.input[2], shape], "bias")], "biased")
        if self.kind == "gemm" and len(node.input) > 2 and node.input[2]:
            bias, beta = node.input[2], float(_attr(node, "beta", 1.0))
            if beta != 1.0:
                bias = b.op("Mul", [bias, b.const(beta, "beta")], "bias")
            return b.op("Add", [y, bias], "biased")
        return y


def plan_op(layer: str, node: onnx.NodeProto, constants: set[str], w_value_of, tile_rows: int) -> AnalogOp:
    """The :class:`AnalogOp` of a float ``Conv`` / ``ConvTranspose`` / ``Gemm`` / ``MatMul`` node.

    Args:
        layer: Layer name (for messages).
        node: The op.
        constants: Constant tensor names (:func:`onnxnoise.tile.values.constant_names`).
        w_value_of: ``name -> clean array`` of a constant tensor.
        tile_rows: ``R`` (0: one tile).

    Raises:
        ValueError: One line naming the layer when the op's weight is not where the rewrite
            can split it (not constant, not 2-D for MatMul, Gemm with the weight as ``A``).
    """
    op = node.op_type
    inputs = list(node.input)
    if op == "MatMul":
        static = [i in constants for i in inputs[:2]]
        if static == [False, True]:
            kind, x, w = "matmul_b", inputs[0], inputs[1]
        elif static == [True, False]:
            kind, x, w = "matmul_a", inputs[1], inputs[0]
        else:
            msg = f"layer {layer!r}: MatMul needs exactly one constant (weight) operand to be split into tiles"
            raise ValueError(msg)
    else:
        kind = {"Conv": "conv", "ConvTranspose": "conv_transpose", "Gemm": "gemm"}[op]
        x, w = inputs[0], inputs[1]
        if w not in constants or x in constants:
            msg = f"layer {layer!r}: {op} weight (input 1) must be constant and input 0 the activation"
            raise ValueError(msg)
    w_value = np.asarray(w_value_of(w))
    if w_value.dtype != np.float32:
        msg = f"layer {layer!r}: the tile stages handle float32 weights, got {w_value.dtype}"
        raise ValueError(msg)
    if kind.startswith("matmul") and w_value.ndim != 2:
        msg = f"layer {layer!r}: a MatMul weight must be 2-D to be split into tiles, got shape {list(w_value.shape)}"
        raise ValueError(msg)
    if kind in ("conv", "conv_transpose"):
        group = _attr(node, "group", 1)
        units = w_value.shape[1] if kind == "conv" else w_value.shape[0] // group
        unit_rows = int(np.prod(w_value.shape[2:]))
        columns = w_value.shape[0] if kind == "conv" else w_value.shape[1] * group
        column_shape = (columns,) + (1,) * (w_value.ndim - 2)
    else:
        unit_rows = 1
        if kind == "gemm":
            trans_b = _attr(node, "transB", 0)
            units, columns = (w_value.shape[1], w_value.shape[0]) if trans_b else w_value.shape
            column_shape = (columns,)
        elif kind == "matmul_b":
            units, column_shape = w_value.shape[0], (w_value.shape[1],)
        else:
            units, column_shape = w_value.shape[1], (w_value.shape[0], 1)
    chunks = tile_chunks(units, unit_rows, tile_rows)
    return AnalogOp(layer, node, x, w, w_value, kind, chunks, unit_rows, tuple(int(c) for c in column_shape))


def _attr(node: onnx.NodeProto, name: str, default):
    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def _group_index(per_group: int, group: int, start: int, stop: int) -> np.ndarray:
    """Channel indices ``g * per_group + j`` for every group ``g`` and ``j`` in ``[start, stop)``."""
    return (np.arange(group)[:, None] * per_group + np.arange(start, stop)[None, :]).reshape(-1).astype(np.int64)


def _slice(b: Builder, x: str, start: int, stop: int, axis: int) -> str:
    starts, ends = b.const([start], "starts", dtype=np.int64), b.const([stop], "ends", dtype=np.int64)
    return b.op("Slice", [x, starts, ends, b.const([axis], "axes", dtype=np.int64)], "tile_slice")


def _copy(b: Builder, node: onnx.NodeProto, inputs: list[str], what: str) -> str:
    """``node``'s op with its attributes on new inputs (two: no bias); returns the output name."""
    out = b.name(what)
    copy = helper.make_node(node.op_type, inputs, [out], name=f"{out}:node")
    copy.attribute.extend(node.attribute)
    b.nodes.append(copy)
    return out
