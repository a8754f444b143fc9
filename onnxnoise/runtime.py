"""ONNX Runtime sessions for clean and perturbed models, on the CPU or CUDA EP.

A perturbed model is the clean model with some initializers replaced. Rather than
copying and re-serializing the whole ``ModelProto`` per trial, :class:`SessionFactory`
serializes once a *skeleton* (the model without the perturbable initializers) and,
per trial, appends only the serialized replacement tensors. Protobuf parses the
concatenation of two serialized messages as their merge, and a merge appends to
repeated fields, so ``skeleton + GraphProto(initializer=[...])`` is exactly the model
with those initializers swapped in. ONNX Runtime then builds the session (graph
optimizations such as Conv+BatchNormalization fusion see the noisy values).

``SessionOptions.add_initializer`` is deliberately not used: whether it overrides an
initializer already in the model has varied between ONNX Runtime versions.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from onnxnoise.errors import SessionError

__all__ = [
    "DEVICES",
    "resolve_providers",
    "SessionFactory",
    "Session",
]

log = logging.getLogger(__name__)

#: Accepted values of ``--device``.
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")

_CPU = "CPUExecutionProvider"
_CUDA = "CUDAExecutionProvider"


def resolve_providers(device: str) -> list[str]:
    """Map ``--device`` to an ONNX Runtime execution provider list.

    Args:
        device: ``auto`` (CUDA EP when this onnxruntime build has it, else CPU),
            ``cpu``, or ``cuda``.

    Returns:
        Provider names, most preferred first.

    Raises:
        SessionError: If ``device`` is unknown, or ``cuda`` is asked for and the CUDA
            EP is not available in the installed onnxruntime.
    """
    if device not in DEVICES:
        msg = f"`--device` must be one of {', '.join(DEVICES)}, got {device!r}"
        raise SessionError(msg)
    available = ort.get_available_providers()
    if device == "cpu":
        return [_CPU]
    if _CUDA in available:
        return [_CUDA, _CPU]
    if device == "cuda":
        msg = (
            "`--device cuda` but this onnxruntime has no CUDAExecutionProvider "
            f"(available: {', '.join(available)}); install the gpu extra: "
            "pip uninstall -y onnxruntime && pip install 'onnxnoise[gpu]'"
        )
        raise SessionError(msg)
    return [_CPU]


@dataclass(frozen=True)
class Session:
    """One ONNX Runtime inference session of a (possibly perturbed) classifier.

    Attributes:
        session: The underlying ``onnxruntime.InferenceSession``.
        input_name: Name of the image input.
        output_name: Name of the score output.
        provider: The execution provider that actually runs the model
            (``CUDAExecutionProvider`` or ``CPUExecutionProvider``).
    """

    session: ort.InferenceSession
    input_name: str
    output_name: str
    provider: str

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch.

        Args:
            batch: Model input, e.g. ``(N, 3, H, W) float32 NCHW``.

        Returns:
            ``(N, C)`` scores as returned by the model (logits or probabilities),
            flattened to 2-D when the output has extra unit dimensions.
        """
        (out,) = self.session.run([self.output_name], {self.input_name: batch})
        return out.reshape(out.shape[0], -1)


class SessionFactory:
    """Builds sessions of one model with any subset of its initializers replaced.

    Args:
        model: The clean model (from :func:`onnxnoise.graph.load_model`); not modified.
        replaceable: Names of the initializers that trials may replace.
        input_name: Name of the image input.
        output_name: Name of the score output.
        device: ``auto``, ``cpu`` or ``cuda`` (see :func:`resolve_providers`).
        threads: Intra-op threads for the CPU EP; ``0`` lets ONNX Runtime choose.

    Raises:
        SessionError: See :func:`resolve_providers`.
    """

    def __init__(
        self,
        model: onnx.ModelProto,
        replaceable: Iterable[str],
        *,
        input_name: str,
        output_name: str,
        device: str = "auto",
        threads: int = 0,
    ) -> None:
        self.device = device
        self.providers = resolve_providers(device)
        self.input_name = input_name
        self.output_name = output_name
        self.threads = threads
        names = set(replaceable)
        skeleton = onnx.ModelProto()
        skeleton.CopyFrom(model)
        self._clean: dict[str, onnx.TensorProto] = {}
        kept = []
        for tensor in skeleton.graph.initializer:
            if tensor.name in names:
                self._clean[tensor.name] = tensor
            else:
                kept.append(tensor)
        missing = names - self._clean.keys()
        if missing:
            msg = f"initializers not found in the model: {sorted(missing)[:5]}"
            raise SessionError(msg)
        del skeleton.graph.initializer[:]
        skeleton.graph.initializer.extend(kept)
        self._skeleton = skeleton.SerializeToString()
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
        self._versions = f"model IR version {model.ir_version}, opset {opset}; onnxruntime {ort.__version__}"
        self._clean_bytes = {name: _graph_bytes([t]) for name, t in self._clean.items()}

    def model_bytes(self, replacements: Mapping[str, np.ndarray] | None = None) -> bytes:
        """Serialized model with ``replacements`` swapped in (the rest stay clean).

        Args:
            replacements: ``name -> array``; names must be among ``replaceable`` and
                arrays must keep the clean tensor's shape and dtype.

        Returns:
            Bytes ``onnxruntime.InferenceSession`` can load.

        Raises:
            KeyError: If a name is not replaceable.
        """
        replacements = replacements or {}
        parts = [self._skeleton]
        for name, clean in self._clean_bytes.items():
            if name in replacements:
                parts.append(_graph_bytes([numpy_helper.from_array(np.asarray(replacements[name]), name)]))
            else:
                parts.append(clean)
        unknown = replacements.keys() - self._clean.keys()
        if unknown:
            raise KeyError(f"not replaceable: {sorted(unknown)[:5]}")
        return b"".join(parts)

    def create(self, replacements: Mapping[str, np.ndarray] | None = None) -> Session:
        """Create a session of the model with ``replacements`` swapped in.

        Raises:
            SessionError: If ONNX Runtime rejects the model, or ``cuda`` was asked for
                and the session fell back to the CPU (e.g. CUDA libraries missing).
        """
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self.threads
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(self.model_bytes(replacements), options, providers=self.providers)
        except Exception as exc:  # onnxruntime raises several unrelated types
            msg = f"onnxruntime could not load the model: {_ort_message(exc)} ({self._versions})"
            raise SessionError(msg) from exc
        provider = session.get_providers()[0]
        if self.providers[0] == _CUDA and provider != _CUDA:
            if self.device == "cuda":
                msg = (
                    "`--device cuda` but onnxruntime fell back to the CPU when creating the session "
                    "(CUDA or cuDNN libraries not loadable); check `nvidia-smi` and the onnxruntime-gpu "
                    "CUDA requirements"
                )
                raise SessionError(msg)
            log.warning("CUDA execution provider unavailable at session creation; running on the CPU")
        return Session(session, self.input_name, self.output_name, provider)


def _ort_message(exc: BaseException) -> str:
    """First line of an onnxruntime error without its status code and C++ source location."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    return re.sub(r"^/\S+:\d+ .*?\) (?=[A-Z])", "", text)


def _graph_bytes(tensors: list[onnx.TensorProto]) -> bytes:
    """Serialize ``ModelProto(graph=GraphProto(initializer=tensors))`` for appending."""
    patch = onnx.ModelProto()
    patch.graph.initializer.extend(tensors)
    return patch.SerializeToString()
