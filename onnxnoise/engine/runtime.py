"""ONNX Runtime sessions for clean and perturbed models, on any execution provider.

A perturbed model is the clean model with some initializers replaced. No protobuf holding
the weights is serialized per trial: :class:`SessionFactory` serializes once a *skeleton* of
the model in which every initializer ONNX Runtime can take from numpy (and every replaceable
one) is an *external data reference* (``data_location = EXTERNAL``, a placeholder location, no
bytes), and each session receives the arrays, clean or noisy, as ``OrtValue`` s through
``SessionOptions.add_external_initializers``, which ONNX Runtime matches by name against those
references (the arrays are wrapped, not copied, and kept alive with the session). ONNX Runtime
then builds the session (graph optimizations such as Conv+BatchNormalization fusion see the
noisy values); results are bit-identical to serializing the noisy model (same graph, same
arrays; ``tests/model/test_formats.py``). On VGG16 (553 MB of weights) this removed 4.5 s of
serialization from each noisy session build and the parse of the weights from every build
(docs/performance.md, "Big models").

Initializers ONNX Runtime cannot take from numpy (bfloat16, float8) and scalars stay in the
serialized model: per trial, only the replaced ones among them are serialized and appended.
Protobuf parses the concatenation of two serialized messages as their merge, and a merge
appends to repeated fields, so ``skeleton + GraphProto(initializer=[...])`` is exactly the
model with those initializers swapped in. The same in-proto path serves every initializer
when ``external_above_bytes`` is ``None`` or above the model's total.

``SessionOptions.add_initializer`` is deliberately not used: whether it overrides an
initializer already in the model has varied between ONNX Runtime versions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from onnxnoise.config import DEVICES
from onnxnoise.engine.graph_edit import GraphEdit, StagedSkeletons
from onnxnoise.engine.providers import (
    CUDA, RECORD_ASSIGNMENT, ProviderChoice, choose_providers, cuda_options, ort_message, resolve_providers,
)
from onnxnoise.engine.session import DEVICE_ID, Session
from onnxnoise.errors import SessionError
from onnxnoise.lazy import lazy_module

ort = lazy_module("onnxruntime")

__all__ = [
    "DEVICES",
    "DEVICE_ID",
    "resolve_providers",
    "cuda_options",
    "SessionFactory",
    "external_skeleton",
    "Session",
    "ort_message",
]

log = logging.getLogger(__name__)

#: Above this many initializer bytes, :class:`SessionFactory` passes weights as
#: external initializers instead of serializing them (protobuf's limit is 2 GiB). 0: every model
#: with weights takes the external path (it was ``1 << 30`` until the VGG16 measurements in
#: docs/performance.md, "Big models": serializing 553 MB of noisy weights cost 4.5 s per trial).
EXTERNAL_ABOVE_BYTES = 0

#: Initializers smaller than this stay inline in the skeleton on the external path.
_EXTERNAL_MIN_BYTES = 1024

#: Placeholder ``location`` of the external data references in the skeleton; ONNX
#: Runtime never opens it, because every such tensor is supplied in memory.
_EXTERNAL_LOCATION = "onnxnoise-in-memory-initializer"

#: numpy dtypes ``OrtValue.ortvalue_from_numpy`` accepts (bfloat16 / float8 do not).
_ORT_NUMPY_DTYPES = frozenset(
    np.dtype(t)
    for t in (np.float32, np.float64, np.float16, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.int64,
              np.uint32, np.uint64, np.bool_)
)


def _tensor_nbytes(tensor: onnx.TensorProto) -> int:
    itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    return int(np.prod(tensor.dims, dtype=np.int64)) * itemsize


class SessionFactory:
    """Builds sessions of one model with any subset of its initializers replaced.

    Args:
        model: The clean model (from :func:`onnxnoise.model.load_model`); not modified.
        replaceable: Names of the initializers that trials may replace.
        input_name: Name of the image input.
        output_name: Name of the score output.
        device: ``auto``, ``cpu`` or ``cuda`` (see :func:`resolve_providers`); ignored with ``choice``.
        threads: Intra-op threads for the CPU EP; ``0`` lets ONNX Runtime choose.
        external_above_bytes: When the model's initializers total more bytes than
            this, weights go to ONNX Runtime as external initializers instead of
            being serialized (required above protobuf's 2 GiB limit); ``0`` (the
            default, :data:`EXTERNAL_ABOVE_BYTES`) takes that path for every model,
            ``None`` never takes it.
        tf32: Let the CUDA provider use TF32 for float32 convolutions and matrix
            products (:func:`cuda_options`); default exact float32. No effect on the CPU.
        spinning: Let the CPU intra-op threads spin between operators
            (``session.intra_op.allow_spinning``, ONNX Runtime's default). Sessions that
            take turns batch by batch (prefix reuse in lockstep) set it off: each
            session has its own thread pool, and the previous session's spinning threads
            take the cores from the next one (measured 2026-11-29 on ResNet20 BN, 2,000
            CIFAR-10 images, 39 suffix sessions interleaved, one run on a shared 2-core
            Xeon: 1.74 s per trial spinning, 1.20 s not).
        arena: Keep ONNX Runtime's CPU memory arena (``enable_cpu_mem_arena``, its
            default): a session's activation buffers stay allocated between runs. Sessions
            that take turns (prefix reuse in lockstep, up to hundreds at once) set it off, so
            an idle session holds its weights only and the working memory of one batch is
            reused by the next session (ResNet56 BN, 111 suffix sessions, batch 128: peak
            RSS grew by 5,140 MiB with arenas).
        choice: The providers (:func:`onnxnoise.engine.providers.choose_providers`, ``--provider``);
            ``None``: from ``device`` and ``tf32``.
        arrays: Clean values of initializers that ``model`` holds as bytes-less external references
            (:func:`external_skeleton`), taken as they are instead of read from the model.

    Attributes:
        external: Whether the external-initializer path is in use.
        choice: The :class:`~onnxnoise.engine.providers.ProviderChoice` every session is built with.
        providers: Its provider names, most preferred first.
        provider_options: Options passed with each provider of ``providers`` (same order).

    Raises:
        SessionError: See :func:`onnxnoise.engine.providers.choose_providers`.
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
        external_above_bytes: int | None = EXTERNAL_ABOVE_BYTES,
        tf32: bool = False,
        spinning: bool = True,
        arena: bool = True,
        choice: ProviderChoice | None = None,
        arrays: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self.device = device
        self.spinning = spinning
        self.arena = arena
        self.choice = choice if choice is not None else choose_providers(device, tf32=tf32)
        self.providers = list(self.choice.names)
        self.tf32 = tf32
        self.provider_options = [dict(o) for o in self.choice.options]
        self.input_name = input_name
        self.output_name = output_name
        self.threads = threads
        names = set(replaceable)
        self._replaceable = frozenset(names)
        total = sum(_tensor_nbytes(t) for t in model.graph.initializer)
        self.external = external_above_bytes is not None and total > external_above_bytes
        skeleton = onnx.ModelProto()
        skeleton.CopyFrom(model)
        self._clean: dict[str, onnx.TensorProto] = {}
        #: External path: ``name -> clean array`` of the tensors passed as external initializers.
        self._external: dict[str, np.ndarray] = {}
        kept = []
        for tensor in skeleton.graph.initializer:
            reference = arrays is not None and tensor.name in arrays and tensor.data_location == onnx.TensorProto.EXTERNAL
            array = _externalized(tensor, tensor.name in names, arrays) if self.external or reference else None
            if array is not None:
                self._external[tensor.name] = array
                kept.append(tensor)
            elif tensor.name in names:
                self._clean[tensor.name] = tensor
            else:
                kept.append(tensor)
        missing = names - self._clean.keys() - self._external.keys()
        if missing:
            msg = f"initializers not found in the model: {sorted(missing)[:5]}"
            raise SessionError(msg)
        del skeleton.graph.initializer[:]
        skeleton.graph.initializer.extend(kept)
        try:
            self._skeleton = skeleton.SerializeToString()
        except ValueError as exc:  # protobuf refuses messages over 2 GiB
            msg = (
                f"the model is too large to serialize ({total / 2**30:.2f} GiB of initializers): {exc}; "
                "pass a lower `external_above_bytes`"
            )
            raise SessionError(msg) from exc
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
        self._versions = f"model IR version {model.ir_version}, opset {opset}; onnxruntime {ort.__version__}"
        self._clean_bytes = {name: _graph_bytes([t]) for name, t in self._clean.items()}
        self._staged = StagedSkeletons(self._skeleton)

    @staticmethod
    def _externalizable(tensor: onnx.TensorProto, replaceable: bool) -> bool:
        """Whether ``tensor`` becomes an external reference: a weight-like array ONNX Runtime can take from numpy.

        int64 tensors (shapes, axes, indices) stay in the model: ONNX Runtime's shape inference reads
        them from the graph when it loads it, before external initializers are attached (a Reshape's
        shape given externally fails with "Cannot parse data from external tensors"). Other integer
        and bool tensors go external only when replaceable (integer-quantized weights), floats when
        replaceable or at least :data:`_EXTERNAL_MIN_BYTES` large.
        """
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))
        if dtype not in _ORT_NUMPY_DTYPES or len(tensor.dims) == 0 or dtype == np.int64:
            return False
        if replaceable:
            return True
        return dtype.kind == "f" and _tensor_nbytes(tensor) >= _EXTERNAL_MIN_BYTES

    def model_bytes(self, replacements: Mapping[str, np.ndarray] | None = None, *,
                    edit: GraphEdit | None = None) -> bytes:
        """Serialized model with ``replacements`` swapped in (the rest stay clean).

        Args:
            replacements: ``name -> array``; names must be among ``replaceable`` and
                arrays must keep the clean tensor's shape and dtype.
            edit: Rewrite the skeleton first (the tile's stages; rewritten once per
                ``edit.key``, :class:`~onnxnoise.engine.graph_edit.StagedSkeletons`).

        Returns:
            Bytes ``onnxruntime.InferenceSession`` can load, given the arrays of the external
            references (:meth:`create` passes them); :meth:`standalone_bytes` holds every weight.

        Raises:
            KeyError: If a name is not replaceable.
        """
        replacements = replacements or {}
        parts = [self._skeleton if edit is None else self._staged.get(edit)[0]]
        for name, clean in self._clean_bytes.items():
            if name in replacements:
                parts.append(_graph_bytes([numpy_helper.from_array(np.asarray(replacements[name]), name)]))
            else:
                parts.append(clean)
        unknown = replacements.keys() - self._replaceable
        if unknown:
            raise KeyError(f"not replaceable: {sorted(unknown)[:5]}")
        return b"".join(parts)

    def standalone_bytes(self, replacements: Mapping[str, np.ndarray] | None = None) -> bytes:
        """The whole model with ``replacements`` swapped in, every weight in the bytes (no external reference).

        For tools that load the model on their own (another runtime, a file on disk); sessions of
        this factory are built from :meth:`model_bytes` plus the arrays instead. Limited to
        protobuf's 2 GiB.

        Raises:
            KeyError: If a name is not replaceable.
        """
        replacements = replacements or {}
        model = onnx.load_from_string(self.model_bytes(replacements))
        for tensor in model.graph.initializer:
            if tensor.name in self._external:
                array = np.asarray(replacements.get(tensor.name, self._external[tensor.name]))
                tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
        return model.SerializeToString()

    def create(self, replacements: Mapping[str, np.ndarray] | None = None, *,
               edit: GraphEdit | None = None, record: bool = False, threads: int | None = None) -> Session:
        """Create a session of the model with ``replacements`` swapped in.

        ``threads``: the session's CPU intra-op threads (default: the factory's ``threads``; whole-model
        trials side by side ask for fewer, :mod:`onnxnoise.engine.layout`). With ``edit``, the session runs the rewritten graph (the tile's stages), fetches its
        counters at every run and adds them to ``edit.tally``. With ``record``, ONNX Runtime
        records which provider runs each node (:func:`onnxnoise.engine.providers.node_share`).

        Raises:
            KeyError: If a name in ``replacements`` is not replaceable.
            SessionError: If ONNX Runtime rejects the model, or a requested provider (``--provider``,
                ``--device cuda``) is not among the session's (e.g. CUDA libraries missing).
        """
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self.threads if threads is None else threads
        if not self.spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.enable_cpu_mem_arena = self.arena
        options.log_severity_level = 4  # errors reach the caller as exceptions; ORT's own log would add lines
        if record:
            options.add_session_config_entry(RECORD_ASSIGNMENT, "1")
        keepalive: tuple = ()
        unknown = (replacements or {}).keys() - self._replaceable
        if unknown:
            raise KeyError(f"not replaceable: {sorted(unknown)[:5]}")
        if self._external:
            replacements = dict(replacements or {})
            arrays = []
            for name, clean in self._external.items():
                array = np.ascontiguousarray(replacements.pop(name, clean))
                if array.shape != clean.shape or array.dtype != clean.dtype:
                    msg = (
                        f"replacement for {name!r} has shape {array.shape} {array.dtype}, "
                        f"expected {clean.shape} {clean.dtype}"
                    )
                    raise SessionError(msg)
                arrays.append(array)
            values = [ort.OrtValue.ortvalue_from_numpy(a) for a in arrays]
            options.add_external_initializers(list(self._external), values)
            keepalive = (arrays, values)  # ONNX Runtime may keep pointing at these buffers
        try:
            session = self.choice.session(self.model_bytes(replacements, edit=edit), options)
        except SessionError:
            raise
        except Exception as exc:  # onnxruntime raises several unrelated types
            msg = f"onnxruntime could not load the model: {ort_message(exc)} ({self._versions})"
            raise SessionError(msg) from exc
        provider = session.get_providers()[0]
        requested = self.choice.requested
        if requested is not None and requested != CUDA and requested not in session.get_providers():
            msg = (f"`--provider {requested}` but onnxruntime built the session on "
                   f"{', '.join(session.get_providers())}; check the provider's libraries and options")
            raise SessionError(msg)
        if self.providers[0] == CUDA and provider != CUDA:
            if requested == CUDA:
                flag = "--device cuda" if self.device == "cuda" else f"--provider {CUDA}"
                msg = (
                    f"`{flag}` but onnxruntime fell back to the CPU when creating the session "
                    "(CUDA or cuDNN libraries not loadable); check `nvidia-smi` and the onnxruntime-gpu "
                    "CUDA requirements"
                )
                raise SessionError(msg)
            log.warning("CUDA execution provider unavailable at session creation; running on the CPU")
        counters = {} if edit is None else self._staged.get(edit)[1]
        return Session(session, self.input_name, self.output_name, provider, keepalive, counters=counters,
                       tally={} if edit is None else edit.tally)


def external_skeleton(model: onnx.ModelProto, replaceable: Iterable[str]) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A copy of ``model`` whose weight-like initializers are bytes-less references, and their clean arrays.

    The tensors :class:`SessionFactory` would pass as external initializers (its ``_externalizable`` rule,
    ``replaceable`` counting as replaceable) lose their bytes; the arrays (read-only, ``name -> array``)
    go to every factory of a part of the model (``SessionFactory(..., arrays=...)``), so splitting the
    model and building a factory per split position copies and parses no weight: VGG16's suffix factory
    took 3.9-4.1 s doing both, against 0.5 s for a session of the whole model.
    """
    names = set(replaceable)
    light = onnx.ModelProto()
    light.CopyFrom(model)
    arrays: dict[str, np.ndarray] = {}
    for tensor in light.graph.initializer:
        array = _externalized(tensor, tensor.name in names, None)
        if array is not None:
            arrays[tensor.name] = array
    return light, arrays


def _externalized(tensor: onnx.TensorProto, replaceable: bool,
                  arrays: Mapping[str, np.ndarray] | None) -> np.ndarray | None:
    """``tensor`` as a bytes-less external reference and its clean array, or ``None`` if it stays in the model.

    A tensor that is a reference already takes its array from ``arrays`` (:func:`external_skeleton`); any
    other one is turned into a reference when :meth:`SessionFactory._externalizable`, its array parsed
    (read-only).
    """
    if tensor.data_location == onnx.TensorProto.EXTERNAL and arrays is not None and tensor.name in arrays:
        return arrays[tensor.name]
    if not SessionFactory._externalizable(tensor, replaceable):
        return None
    array = numpy_helper.to_array(tensor)
    array.setflags(write=False)
    _make_external_reference(tensor, array.nbytes)
    return array


def _make_external_reference(tensor: onnx.TensorProto, nbytes: int) -> None:
    """Drop ``tensor``'s bytes and mark it as external data supplied at session creation."""
    for field_name in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data",
                       "string_data"):
        tensor.ClearField(field_name)
    del tensor.external_data[:]
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", _EXTERNAL_LOCATION), ("offset", "0"), ("length", str(nbytes))):
        entry = tensor.external_data.add()
        entry.key = key
        entry.value = value


def _graph_bytes(tensors: list[onnx.TensorProto]) -> bytes:
    """Serialize ``ModelProto(graph=GraphProto(initializer=tensors))`` for appending."""
    patch = onnx.ModelProto()
    patch.graph.initializer.extend(tensors)
    return patch.SerializeToString()
