"""What one ``onnxnoise check`` asks beyond a gate at one strength: a tolerance search or a protection plan."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from onnxnoise.check.tolerance import RESOLUTION, check_resolution
from onnxnoise.errors import ConfigError
from onnxnoise.settings import SEARCH, option

__all__ = ["CheckRequest"]

#: What the request's settings share: ``check``'s options in the search section, not repeated by a re-check.
_SEARCH = {"commands": ("check",), "group": SEARCH, "recheck": False}


@dataclass(frozen=True)
class CheckRequest:
    """A gate at one strength (the default), the noisiest passing strength, or a protection plan.

    Each field is an option of ``onnxnoise check`` (:mod:`onnxnoise.settings`).

    Attributes:
        find_limit: Search the noisiest strength that passes, by bisection
            (:func:`onnxnoise.check.tolerance.find_limit`).
        find_min_snr: ``find_limit`` for gaussian-snr's SNR.
        find_resolution: The search's stopping ratio minus 1; ``None``: :data:`RESOLUTION`.
        protect: ``auto`` or a layer regular expression: layers to keep noise-free when the
            gate does not pass (:func:`onnxnoise.check.protect.plan_protection`).
        protect_file: A text file of layer names to keep noise-free, one per line (what
            ``--protect auto`` writes; :func:`onnxnoise.check.protect.read_layers_file`).

    Raises:
        ConfigError: ``protect`` or ``protect_file`` with a search or with each other, or
            ``find_resolution`` without a search or not > 0.
    """

    find_limit: bool = option(
        False, flag="--find-limit", action="store_true", **_SEARCH,
        help="search the noisiest strength that still passes (the lowest SNR, the longest time, the highest rate), by "
        "bisection; the strength option gives the range as two values (default: the model's default grid's extremes)")
    find_min_snr: bool = option(False, flag="--find-min-snr", action="store_true", **_SEARCH,
                                help="--find-limit for gaussian-snr's SNR")
    find_resolution: float | None = option(
        None, flag="--find-resolution", type=float, metavar="F", shown=RESOLUTION, **_SEARCH,
        help="stop the search when its bracket's ratio is at most 1 + F (default {default})")
    protect: str | None = option(
        None, flag="--protect", metavar="auto|REGEX", **_SEARCH,
        help="when the gate does not pass: keep layers noise-free (digital) so it does; auto ranks layers by "
        "sensitivity and keeps the fewest, REGEX keeps the matching layers")
    protect_file: Path | None = option(
        None, flag="--protect-file", type=Path, metavar="FILE", **_SEARCH,
        help="when the gate does not pass: keep the layers named in FILE noise-free, one name per line (the file "
        "--protect auto writes, protect-layers.txt)")

    def __post_init__(self) -> None:
        if self.protect and self.protect_file is not None:
            raise ConfigError("give either --protect or --protect-file, not both")
        if self.search and (self.protect or self.protect_file is not None):
            raise ConfigError("--protect and --protect-file go with a gate at one strength, not with --find-limit")
        if self.find_resolution is not None:
            if not self.search:
                raise ConfigError("--find-resolution sets the search's stopping point; use it with --find-limit "
                                  "(or --find-min-snr), or drop it")
            check_resolution(self.find_resolution)

    @property
    def search(self) -> bool:
        """Whether a tolerance search was asked for (``--find-limit`` or ``--find-min-snr``)."""
        return bool(self.find_limit or self.find_min_snr)

    @property
    def resolution(self) -> float:
        """The search's stopping ratio minus 1."""
        return RESOLUTION if self.find_resolution is None else self.find_resolution
