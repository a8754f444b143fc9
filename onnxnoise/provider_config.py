"""Execution-provider settings of a run: ``--provider``, ``--provider-option``, ``--provider-library``.

:class:`ProviderConfig` is ``RunConfig.provider``. Every field defaults to "not given", and then a
run's provider comes from ``--device`` exactly as before these settings existed, so the trial keys of
earlier runs stay valid. Given, ``--provider`` names any execution provider of the installed
onnxruntime (``onnxruntime.get_available_providers()``) or of a plugin library registered with
``--provider-library`` (ONNX Runtime's plugin EP API); the engine turns them into sessions
(:func:`onnxnoise.engine.providers.choose_providers`). The provider a session really runs on and the
options given enter the trial key (``key_fields()["provider"]``, ``["provider_options"]``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnxnoise.errors import ConfigError
from onnxnoise.settings import RUNTIME, config_values, option

__all__ = ["ProviderConfig", "parse_provider_options"]


def parse_provider_options(items: Sequence[str] | Mapping[str, Any] | None) -> dict[str, str] | None:
    """Provider options from ``["device_type=CPU", "num_of_threads=2"]`` (CLI) or a mapping (TOML).

    ONNX Runtime takes provider options as text, so every value becomes a string (TOML booleans
    as ``1``/``0``, the spelling ONNX Runtime's providers read).

    Raises:
        ConfigError: On an item without ``=`` or with an empty key.
    """
    if items is None:
        return None
    if isinstance(items, str):
        items = [items]
    if isinstance(items, Mapping):
        pairs = [(str(key), value, f"{key}={value}") for key, value in items.items()]
    else:
        pairs = [(*str(i).partition("=")[::2], str(i)) if "=" in str(i) else ("", "", str(i)) for i in items]
    out: dict[str, str] = {}
    for key, value, item in pairs:
        if not key.strip():
            raise ConfigError(f"`--provider-option` {item!r} must look like KEY=VALUE, e.g. device_type=CPU")
        out[key.strip()] = ("1" if value else "0") if isinstance(value, bool) else str(value).strip()
    return out


@dataclass(frozen=True)
class ProviderConfig:
    """The execution provider a run asks for by name, with its options and plugin library.

    Attributes:
        name: ONNX Runtime provider name (``CPUExecutionProvider``, ``OpenVINOExecutionProvider``...);
            ``None``: ``--device`` decides.
        options: Provider options, ``key -> text`` (``{}``: the provider's defaults).
        library: Shared library of a plugin execution provider, registered with
            ``onnxruntime.register_execution_provider_library`` before the first session.

    Raises:
        ConfigError: Options or a library without ``--provider``, or a library that is not a file.
    """

    name: str | None = option(
        None, key="provider", flag="--provider", metavar="NAME", group=RUNTIME, files=("sweeps",),
        trial_key="provider",
        help="run on this ONNX Runtime execution provider, e.g. CPUExecutionProvider or a plugin's (see "
        "docs/providers.md); refused when it runs none of the model's nodes; instead of --device")
    options: Mapping[str, str] = option(
        default_factory=dict, key="provider_options", flag="--provider-option", metavar="KEY=VALUE",
        action="append", parse=parse_provider_options, group=RUNTIME, files=("sweeps",), shown="",
        trial_key="provider_options",
        help="an option of --provider, repeatable (e.g. device_type=CPU); recorded in the trial key")
    library: Path | None = option(
        None, key="provider_library", flag="--provider-library", metavar="PATH", type=Path, group=RUNTIME,
        files=("sweeps",), trial_key="provider",
        help="plugin execution provider library to register first (e.g. the path from "
        "onnxruntime_ep_openvino.get_library_path()); --provider names the provider it adds")

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", dict(parse_provider_options(self.options) or {}))
        if self.library is not None:
            object.__setattr__(self, "library", Path(self.library))
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()):
            raise ConfigError(f"`--provider` must name an execution provider, got {self.name!r}")
        if self.name is None and (self.options or self.library is not None):
            flag = "--provider-option" if self.options else "--provider-library"
            raise ConfigError(f"`{flag}` needs `--provider NAME` (the provider it is for)")
        if self.library is not None and not self.library.is_file():
            raise ConfigError(f"`--provider-library` {self.library}: no such file; pass the plugin's shared library")

    @classmethod
    def from_options(cls, **options: Any) -> ProviderConfig:
        """Build from user options by key (``None``: not given), as :func:`onnxnoise.settings.config_values`."""
        return cls(**config_values(cls, options))

    def to_dict(self) -> dict[str, Any]:
        """All settings, JSON-ready."""
        return {"provider": self.name, "provider_options": dict(self.options),
                "provider_library": None if self.library is None else str(self.library)}
