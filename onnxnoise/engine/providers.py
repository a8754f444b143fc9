"""Execution providers: which ones a session is built with, plugin libraries, and where nodes ran.

``--device auto|cpu|cuda`` maps to the CPU and CUDA providers (:func:`resolve_providers`), as it
always did. ``--provider NAME`` (:class:`onnxnoise.provider_config.ProviderConfig`) names any
provider instead: one of the installed onnxruntime (``onnxruntime.get_available_providers()``),
passed by name, or one a plugin library brings (``--provider-library``, registered with
``onnxruntime.register_execution_provider_library``), which ONNX Runtime offers per device
(``onnxruntime.get_ep_devices()``) and a session takes through
``SessionOptions.add_provider_for_devices``. :func:`choose_providers` makes one
:class:`ProviderChoice` of either; :meth:`ProviderChoice.session` builds a session with it.

No silent fallback: ONNX Runtime places each node of the optimized graph on the first provider
that takes it, the CPU provider taking the rest, and builds a session even when the requested
provider takes none. :func:`node_share` reads the placement ONNX Runtime records when asked
(session config ``session.record_ep_graph_assignment_info``) and :func:`check_node_share` refuses a
run whose requested provider runs no node.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxnoise.config import DEVICES
from onnxnoise.errors import SessionError
from onnxnoise.lazy import lazy_module
from onnxnoise.provider_config import ProviderConfig

ort = lazy_module("onnxruntime")

__all__ = [
    "CPU", "CUDA", "RECORD_ASSIGNMENT", "ProviderChoice", "NodeShare", "cuda_options", "resolve_providers",
    "choose_providers", "register_library", "ort_message", "plugin_version", "node_share", "check_node_share",
    "unreported_options",
]

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

#: Session config entry that makes ONNX Runtime record which provider runs each node (onnxruntime >= 1.23).
RECORD_ASSIGNMENT = "session.record_ep_graph_assignment_info"

#: Plugin libraries registered in this process: registration name -> library path.
_REGISTERED: dict[str, str] = {}


def cuda_options(tf32: bool = False) -> dict[str, str]:
    """CUDA execution provider options of every session: exact float32 unless ``tf32``.

    ONNX Runtime's CUDA provider runs float32 convolutions and matrix products in TF32
    (10-bit mantissa inputs) on Ampere and newer GPUs unless ``use_tf32`` is ``0``
    (provider option since onnxruntime 1.18), so a "float32" run there would not be
    float32. Exact float32 is the default; ``--tf32`` opts in to the faster mode.

    Args:
        tf32: Allow TF32 math.

    Returns:
        ``{"use_tf32": "1" | "0"}`` (ONNX Runtime takes provider options as strings).
    """
    return {"use_tf32": "1" if tf32 else "0"}


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
        return [CPU]
    if CUDA in available:
        return [CUDA, CPU]
    if device == "cuda":
        msg = (
            "`--device cuda` but this onnxruntime has no CUDAExecutionProvider "
            f"(available: {', '.join(available)}); install the gpu extra: "
            "pip uninstall -y onnxruntime && pip install 'onnxnoise[gpu]'"
        )
        raise SessionError(msg)
    return [CPU]


@dataclass(frozen=True)
class ProviderChoice:
    """The providers every session of a run is built with.

    Attributes:
        names: Provider names, most preferred first (the CPU provider last, taking what the
            others do not).
        options: Options of each provider in ``names`` (same order), ``key -> text``.
        requested: The provider the user asked for (``--provider``, or CUDA for ``--device cuda``);
            a session where it runs no node is refused. ``None``: ``--device auto|cpu`` (the CPU
            provider, or CUDA when available, whichever ONNX Runtime gives).
        plugin: ``names[0]`` comes from a plugin library and is added per device
            (``SessionOptions.add_provider_for_devices``) rather than by name.
        given: The options the user set (``--provider-option``), which enter the trial key.
        library: The plugin library registered for it, or ``None``.
    """

    names: tuple[str, ...]
    options: tuple[Mapping[str, str], ...]
    requested: str | None = None
    plugin: bool = False
    given: Mapping[str, str] = field(default_factory=dict)
    library: Path | None = None

    def session(self, model: bytes, options: ort.SessionOptions) -> ort.InferenceSession:
        """An ``InferenceSession`` of ``model`` on these providers (``options`` gains the plugin's devices).

        Raises:
            SessionError: A plugin provider whose library cannot be registered in this process, or that
                offers no device.
            Exception: Whatever ONNX Runtime raises for a model it rejects.
        """
        if not self.plugin:
            return ort.InferenceSession(model, options, providers=list(self.names),
                                        provider_options=[dict(o) for o in self.options])
        if self.library is not None:  # a new process (a Ray worker) registers the library itself
            register_library(self.library, self.names[0])
        options.add_provider_for_devices(_plugin_devices(self.names[0], self.library), dict(self.options[0]))
        return ort.InferenceSession(model, options)


def _plugin_devices(name: str, library: Path | None) -> list[Any]:
    """The ``OrtEpDevice`` s ONNX Runtime offers for provider ``name``; refused when there is none."""
    devices = [d for d in ort.get_ep_devices() if d.ep_name == name]
    if devices:
        return devices
    offered = "; ".join(f"{d.ep_name} on {_describe(d)}" for d in ort.get_ep_devices()) or "none"
    source = f"`--provider-library {library}` registered, but it" if library else "ONNX Runtime"
    msg = (f"{source} offers no device of this machine for `{name}` (devices offered: {offered}); the "
           "plugin supports none of this hardware, see docs/providers.md")
    raise SessionError(msg)


def _describe(device: Any) -> str:
    """``CPU (AMD, vendor id 0x1022)`` for an ``OrtEpDevice``."""
    hw = device.device
    kind = str(hw.type).rsplit(".", 1)[-1]
    return f"{kind} ({hw.vendor}, vendor id {hw.vendor_id:#06x})"


def register_library(library: Path | str, name: str) -> None:
    """Register a plugin execution provider library once per process under ``name``.

    Args:
        library: The plugin's shared library (``.so`` / ``.dll``).
        name: Registration name (this module uses the provider's name).

    Raises:
        SessionError: ONNX Runtime cannot load it as a plugin (not a library, no
            ``CreateEpFactories`` symbol, built for another ONNX Runtime), or ``name`` is
            registered already with another library.
    """
    path = str(Path(library).resolve())
    if _REGISTERED.get(name) == path:
        return
    if name in _REGISTERED:
        raise SessionError(f"`--provider {name}` is registered already from {_REGISTERED[name]}, not {path}")
    try:
        ort.register_execution_provider_library(name, path)
    except Exception as exc:  # onnxruntime raises its own Fail / RuntimeError types
        msg = (f"onnxruntime {ort.__version__} could not register `--provider-library {library}`: "
               f"{ort_message(exc)}; pass the plugin's shared library, built for this onnxruntime version")
        raise SessionError(msg) from exc
    _REGISTERED[name] = path


def ort_message(exc: BaseException) -> str:
    """First line of an error's text; for onnxruntime errors without the status code and C++ source location."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    return re.sub(r"^/\S+:\d+ .*?\) (?=[A-Z])", "", text)


def choose_providers(device: str = "auto", provider: ProviderConfig | None = None, *,
                     tf32: bool = False) -> ProviderChoice:
    """The providers of a run's sessions from ``--device`` or ``--provider``.

    Args:
        device: ``auto``, ``cpu`` or ``cuda`` (:func:`resolve_providers`); ignored when
            ``provider`` names one.
        provider: ``--provider``, its options and plugin library; ``None`` or no name:
            ``device`` decides.
        tf32: CUDA: allow TF32 (:func:`cuda_options`; a ``use_tf32`` option given wins).

    Returns:
        The :class:`ProviderChoice`.

    Raises:
        SessionError: An unknown device; ``cuda`` without the CUDA provider; a provider that
            neither the installed onnxruntime nor a registered plugin has (the line lists both);
            a plugin library ONNX Runtime cannot load, or that offers no device of this machine.
    """
    if provider is None or provider.name is None:
        names = resolve_providers(device)
        return ProviderChoice(tuple(names), tuple(cuda_options(tf32) if p == CUDA else {} for p in names),
                              requested=CUDA if device == "cuda" else None)
    name, given = provider.name, dict(provider.options)
    if provider.library is not None:
        register_library(provider.library, name)
    available = ort.get_available_providers()
    if name in available and provider.library is None:
        own = {**(cuda_options(tf32) if name == CUDA else {}), **given}
        names = (name,) if name == CPU else (name, CPU)
        return ProviderChoice(names, (own, {})[:len(names)], requested=name, given=given)
    plugin = sorted({d.ep_name for d in ort.get_ep_devices()} - set(available))
    if name in plugin or provider.library is not None:
        _plugin_devices(name, provider.library)
        return ProviderChoice((name, CPU), (given, {}), requested=name, plugin=True, given=given,
                              library=provider.library)
    msg = (f"`--provider {name}` is not a provider of this onnxruntime {ort.__version__} (available: "
           f"{', '.join(available + plugin)}); a plugin provider needs `--provider-library PATH`")
    raise SessionError(msg)


def plugin_version(choice: ProviderChoice) -> dict[str, str]:
    """``{provider: version}`` of a plugin provider (its devices' ``ep_metadata["version"]``); ``{}`` otherwise.

    The run's ``versions`` carry it, and the trial key as ``provider_version`` (a plugin's numbers may
    change with its version as the built-in providers' change with onnxruntime's).
    """
    if not choice.plugin:
        return {}
    name = choice.names[0]
    found = {str(d.ep_metadata.get("version")) for d in ort.get_ep_devices()
             if d.ep_name == name and d.ep_metadata.get("version")}
    return {name: ",".join(sorted(found)) or "unknown"}


@dataclass(frozen=True)
class NodeShare:
    """Where the nodes of a session's optimized graph run.

    Attributes:
        provider: The provider asked about.
        nodes: Nodes it runs.
        total: Nodes of the optimized graph (after fusions such as Conv + BatchNormalization).
        by_provider: ``provider -> nodes`` for every provider that runs any.
    """

    provider: str
    nodes: int
    total: int
    by_provider: Mapping[str, int]

    @property
    def share(self) -> float:
        """``nodes / total`` (0 for an empty graph)."""
        return self.nodes / self.total if self.total else 0.0

    def describe(self) -> str:
        """``OpenVINOExecutionProvider runs 40 of 45 nodes (88.9%); CPUExecutionProvider 5``."""
        others = ", ".join(f"{p} {n}" for p, n in self.by_provider.items() if p != self.provider)
        return (f"{self.provider} runs {self.nodes} of {self.total} nodes ({100 * self.share:.1f}%)"
                + (f"; {others}" if others else ""))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: provider, nodes, total, share, by_provider."""
        return {"provider": self.provider, "nodes": self.nodes, "total": self.total,
                "share": round(self.share, 6), "by_provider": dict(self.by_provider)}


def node_share(session: ort.InferenceSession, provider: str) -> NodeShare:
    """How many nodes of ``session``'s optimized graph ``provider`` runs.

    Args:
        session: Built with :data:`RECORD_ASSIGNMENT` set to ``"1"`` in its session options.
        provider: The provider asked about.

    Raises:
        SessionError: The session recorded no placement (built without :data:`RECORD_ASSIGNMENT`, or
            a graph without nodes).
    """
    counts: Counter[str] = Counter()
    try:
        subgraphs = session.get_provider_graph_assignment_info()
    except Exception as exc:  # onnxruntime's Fail when the session did not record it
        raise SessionError(f"the session recorded no node placement ({ort_message(exc)})") from exc
    for subgraph in subgraphs:
        counts[subgraph.ep_name] += len(subgraph.get_nodes())
    if not counts:
        raise SessionError(f"the session recorded no node placement; build it with {RECORD_ASSIGNMENT}=1")
    return NodeShare(provider, counts.get(provider, 0), sum(counts.values()), dict(counts.most_common()))


def check_node_share(share: NodeShare, requested: str | None) -> None:
    """Refuse a run whose requested provider runs none of the model's nodes.

    Raises:
        SessionError: ``requested`` is set and runs no node (the line says where they ran).
    """
    if requested is not None and share.nodes == 0:
        where = ", ".join(f"{p} {n}" for p, n in share.by_provider.items())
        msg = (f"`{requested}` runs none of the model's {share.total} nodes (they run on: {where}); choose a "
               "provider that supports this model's operators, or drop --provider")
        raise SessionError(msg)


def unreported_options(session: ort.InferenceSession, provider: str, given: Mapping[str, str]) -> str | None:
    """A warning line for options given with ``--provider-option`` that ``provider`` does not report back.

    ONNX Runtime drops, without a word, an option a built-in provider does not know (the CPU provider takes
    none: ``{"foo": "bar"}`` gives ``get_provider_options() == {"CPUExecutionProvider": {}}``), so a
    misspelt option changes nothing in the numbers but still enters the trial key.

    Args:
        session: A session built with ``given`` for ``provider``.
        provider: The provider the session runs on.
        given: The options the user set, ``key -> text``.

    Returns:
        The line, or ``None`` when every given option is reported (or none was given).
    """
    reported = session.get_provider_options().get(provider, {})
    missing = sorted(set(given) - set(reported))
    if not missing:
        return None
    known = ", ".join(sorted(reported)) or "none"
    return (f"{provider} does not report the option(s) {', '.join(map(repr, missing))} given with --provider-option: "
            f"ONNX Runtime ignores an option a provider does not know (the numbers are those without it, the trial "
            f"key still includes it); check the name (options it reports: {known})")
