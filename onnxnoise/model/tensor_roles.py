"""Which float initializers are parameters: follow each value to where it is used.

A float initializer is a *parameter* (noised like a weight) when its value reaches an
op that combines it with the data flowing from the image, in a slot that takes values
(a Conv weight, a BatchNormalization mean, a MatMul operand, an ``Add`` operand, ...).
Its path is followed through every node whose inputs are all static (``Cast``,
``Identity``, ``Transpose``, ``Reshape``, ``Concat``, arithmetic on constants, ...; see
:mod:`onnxnoise.model.graph_view`) to those final consumers. It is *not* a parameter
when:

- **shape / index**: every path ends in a slot that is not a value (``Reshape`` shape,
  ``Slice`` starts/ends/axes/steps, ``Expand`` shape, ``Tile`` repeats, ``Resize``
  roi/scales/sizes, ``Pad`` pads, ``TopK`` k, ``Clip`` bounds, quantization scales,
  ...; :data:`NON_PARAMETER_INPUTS`) or in a ``Cast`` to a non-float type. Noise there
  would move a shape or an index, not model a weight error;
- **mixed**: some paths end in such a slot and others in a value slot: noising it would
  change a shape or index too, so it is set aside and said so;
- **unread**: only its shape is read (``Shape``, ``Size``) or nothing reads it;
- **preprocessing**: every value path ends in an elementwise ``Sub`` / ``Div`` / ``Mul``
  / ``Add`` applied to the graph input before the first weight op (input
  normalization inside the graph: ``Sub(mean)``, ``Div(std)``, Keras ``Rescaling`` /
  ``Normalization``). Such constants are set aside unless ``include_preprocessing``.

Functions here are pure: they never change the model they are given.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from onnxnoise.model.graph_view import SHAPE_OPS, GraphView
from onnxnoise.model.tensors import FLOAT_DTYPES, tensor_numel

__all__ = ["NON_PARAMETER_INPUTS", "PREPROCESSING_OPS", "TensorRoles", "tensor_roles"]

_REDUCE_OPS = ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
               "ReduceProd", "ReduceSum", "ReduceSumSquare")

#: Input slots that never take a parameter value (0-based), with their names.
NON_PARAMETER_INPUTS: dict[str, dict[int, str]] = {
    "Resize": {1: "roi", 2: "scales", 3: "sizes"},
    "Upsample": {1: "scales"},
    "Pad": {1: "pads", 2: "constant_value", 3: "axes"},
    "Clip": {1: "min", 2: "max"},
    "Reshape": {1: "shape"},
    "Expand": {1: "shape"},
    "Tile": {1: "repeats"},
    "Slice": {1: "starts", 2: "ends", 3: "axes", 4: "steps"},
    "Range": {0: "start", 1: "limit", 2: "delta"},
    "ConstantOfShape": {0: "shape"},
    "Dropout": {1: "ratio", 2: "training_mode"},
    "QuantizeLinear": {1: "scale", 2: "zero_point"},
    "DequantizeLinear": {1: "scale", 2: "zero_point"},
    "TopK": {1: "k"},
    "OneHot": {1: "depth"},
    "Squeeze": {1: "axes"},
    "Unsqueeze": {1: "axes"},
    "Split": {1: "split"},
    "CumSum": {1: "axis"},
    "Trilu": {1: "k"},
    "Gather": {1: "indices"},
    "GatherElements": {1: "indices"},
    "GatherND": {1: "indices"},
    "ScatterND": {1: "indices"},
    "ScatterElements": {1: "indices"},
    "CenterCropPad": {1: "shape"},
    "Col2Im": {1: "image_shape", 2: "block_shape"},
    "ReverseSequence": {1: "sequence_lens"},
    "MaxUnpool": {1: "indices", 2: "output_shape"},
    "NonMaxSuppression": {2: "max_output_boxes_per_class", 3: "iou_threshold", 4: "score_threshold"},
    "If": {0: "cond"},
    "Loop": {0: "M", 1: "cond"},
    **{op: {1: "axes"} for op in _REDUCE_OPS},
}

#: Elementwise ops that, applied to the graph input with a constant, are input preprocessing.
PREPROCESSING_OPS = frozenset({"Sub", "Div", "Mul", "Add"})

#: Ops the graph input may pass through before preprocessing (layout, dtype, crop, channel order).
_PASS_THROUGH = frozenset({"Cast", "Identity", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Resize",
                           "Upsample", "Slice", "Pad", "Split", "Concat", "Gather", "Clip"})

_STANDARD = ("", "ai.onnx")


@dataclass(frozen=True)
class TensorRoles:
    """What each float initializer of more than one element is.

    Attributes:
        parameters: Names of the parameters (noised when their layer is).
        set_aside: ``name -> reason`` of the float initializers that are not noised.
        preprocessing: The names in ``set_aside`` (or in ``parameters`` with
            ``include_preprocessing``) that are input-preprocessing constants.
    """

    parameters: frozenset[str]
    set_aside: dict[str, str]
    preprocessing: frozenset[str]


def tensor_roles(view: GraphView, *, exclude: frozenset[str] = frozenset(),
                 include_preprocessing: bool = False) -> TensorRoles:
    """Classify the float initializers of ``view`` (see the module docstring).

    Args:
        view: The model's :class:`~onnxnoise.model.graph_view.GraphView`.
        exclude: Names that are neither parameters nor reported (quantization scales and
            zero points of integer weights).
        include_preprocessing: Count input-preprocessing constants as parameters.

    Returns:
        The :class:`TensorRoles`.
    """
    walker = _Walker(view)
    pre_ops = _preprocessing_ops(view)
    parameters: set[str] = set()
    set_aside: dict[str, str] = {}
    preprocessing: set[str] = set()
    for name, tensor in view.tensors.items():
        if name in exclude or tensor.data_type not in FLOAT_DTYPES or tensor_numel(tensor) <= 1:
            continue
        sinks, index = walker.uses(name)
        if sinks and index:
            set_aside[name] = (f"used both as a value and as {_join(index)}: noise would change a shape or index, "
                               "so it is not noised")
        elif index:
            set_aside[name] = f"not a parameter: its value only becomes {_join(index)}"
        elif not sinks:
            set_aside[name] = "not a parameter: only its shape is read, or nothing reads it"
        elif sinks <= set(pre_ops):
            preprocessing.add(name)
            ops = sorted({pre_ops[p] for p in sinks})
            if include_preprocessing:
                parameters.add(name)
            else:
                set_aside[name] = (f"input preprocessing: {'/'.join(ops)} applied to the graph input before the first "
                                   "weight op (normalization inside the graph), not a weight")
        else:
            parameters.add(name)
    return TensorRoles(frozenset(parameters), set_aside, frozenset(preprocessing))


def _join(items) -> str:
    items = sorted(set(items))
    return ", ".join(items[:4]) + (f" (+{len(items) - 4} more)" if len(items) > 4 else "")


class _Walker:
    """Follows a tensor's value through static nodes to its final consumers (memoized)."""

    def __init__(self, view: GraphView) -> None:
        self.view = view
        self.memo: dict[str, tuple[frozenset[int], tuple[str, ...]]] = {}

    def uses(self, name: str) -> tuple[frozenset[int], tuple[str, ...]]:
        """``(value sinks, index sinks)``: positions of the nodes that use the value as a
        parameter (``-1`` for a graph output), and descriptions of non-value uses."""
        if name in self.memo:
            return self.memo[name]
        self.memo[name] = (frozenset(), ())  # a cycle (malformed graph) contributes nothing
        view = self.view
        sinks: set[int] = {-1} if name in view.outputs else set()
        index: list[str] = []
        for position, slot in view.consumers.get(name, ()):
            node = view.nodes[position]
            standard = node.domain in _STANDARD
            label = NON_PARAMETER_INPUTS.get(node.op_type, {}).get(slot) if standard else None
            if label:
                index.append(f"{node.op_type} {label}")
            elif standard and node.op_type == "Cast" and _cast_to(node) not in FLOAT_DTYPES:
                cast = f"Cast to {onnx.TensorProto.DataType.Name(_cast_to(node))}"
                after = self.uses(node.output[0])[1] if node.output and node.output[0] else ()
                index += [f"{cast} -> {label}" for label in after] or [cast]
            elif standard and node.op_type in SHAPE_OPS:
                continue
            elif view.is_static_node(position):
                for out in node.output:
                    if out:
                        more_sinks, more_index = self.uses(out)
                        sinks |= more_sinks
                        index += more_index
            else:
                sinks.add(position)
        self.memo[name] = (frozenset(sinks), tuple(index))
        return self.memo[name]


def _cast_to(node: onnx.NodeProto) -> int:
    return next((int(a.i) for a in node.attribute if a.name == "to"), 0)


def _preprocessing_ops(view: GraphView) -> dict[int, str]:
    """Positions (and op types) of the elementwise constant ops applied to the graph input
    before the first weight op, through layout / dtype / crop ops only."""
    region = set(view.inputs)
    found: dict[int, str] = {}
    for position, node in enumerate(view.nodes):
        if view.depth[position] or node.domain not in _STANDARD:
            continue
        dynamic = [i for i in node.input if i and i not in view.static]
        if not dynamic or not all(i in region for i in dynamic):
            continue
        if node.op_type in PREPROCESSING_OPS and len(dynamic) == 1 and len([i for i in node.input if i]) == 2:
            found[position] = node.op_type
        elif node.op_type not in _PASS_THROUGH or (node.op_type != "Concat" and node.input[0] not in region):
            continue  # a weight op (or a Gather of a table by index): preprocessing ends here
        region.update(o for o in node.output if o)
    return found
