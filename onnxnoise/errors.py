"""Exceptions raised by onnxnoise.

Every error a user can cause derives from :class:`OnnxNoiseError`; the CLI turns
those into one line on stderr and exit code 2. Messages name the argument and the
bad value, say what is wrong and how to fix it, and are lowercase, polars style.
"""

from __future__ import annotations

import re

__all__ = [
    "error_line",
    "MAX_ERROR_CHARS",
    "OnnxNoiseError",
    "GraphError",
    "NoiseConfigError",
    "DataError",
    "SessionError",
    "StoreError",
    "ConfigError",
    "BaselineError",
    "BaselineExpectationError",
    "NotRegularFileError",
    "ExperimentError",
    "UnsafePickleError",
    "PickleExpansionError",
]


class OnnxNoiseError(Exception):
    """Root of all onnxnoise errors caused by input (files, flags, data)."""


class GraphError(OnnxNoiseError):
    """The ONNX file cannot be loaded, validated, or has nothing to perturb."""


class NoiseConfigError(OnnxNoiseError):
    """Noise settings are invalid (e.g. SNR <= 0, unknown policy)."""


class DataError(OnnxNoiseError):
    """A dataset path, layout, label file or preprocessing setting is invalid."""


class SessionError(OnnxNoiseError):
    """ONNX Runtime cannot create or run a session (e.g. CUDA EP unavailable)."""


class StoreError(OnnxNoiseError):
    """The trial store cannot be opened, or belongs to a different experiment."""


class ConfigError(OnnxNoiseError):
    """A run setting (flag, experiment-file key, config field) is invalid."""


class ExperimentError(OnnxNoiseError):
    """The experiment file is missing, not TOML, or has unknown or invalid settings."""


class UnsafePickleError(DataError):
    """A pickled dataset file (CIFAR batch) references a global outside the allow-list.

    Raised while unpickling, so the file may be malicious; the loader turns it into a
    :class:`DataError` naming the file.
    """


class PickleExpansionError(UnsafePickleError):
    """A pickled dataset file's allowed callables would build more bytes than its size allows (CIFAR batch).

    Raised while unpickling, before the memory is taken; the loader turns it into a
    :class:`DataError` naming the file and the bound.
    """


class BaselineError(OnnxNoiseError):
    """The clean baseline trial failed (the model cannot be loaded or run as given), so no noisy trial runs."""


class BaselineExpectationError(OnnxNoiseError):
    """The clean baseline is outside ``--expect-top1 V +- --tolerance T``; no noisy trial was run (CLI: exit 1)."""


class NotRegularFileError(OSError):
    """A dataset path is a FIFO, device, socket or folder where a regular file was expected.

    An ``OSError`` (not an :class:`OnnxNoiseError`): it is raised where opening a file fails, and
    readers report it as they report any file that cannot be opened (skipped, or one line).
    """


#: Longest error line printed: a value echoed from a hostile input (a 10 MB preset name in a
#: model's metadata) is cut in the middle, so the line keeps its start and its advice.
MAX_ERROR_CHARS = 2000


def error_line(text: str) -> str:
    """``text`` as one line: line breaks (urllib's redirect-loop reason has two) become spaces, and a
    text of more than :data:`MAX_ERROR_CHARS` characters keeps its start and end around
    ``[... N characters left out ...]`` (a message echoing a huge value stays readable, its advice kept)."""
    text = re.sub(r"\s*[\r\n]+\s*", " ", text.strip())
    if len(text) <= MAX_ERROR_CHARS:
        return text
    head, tail = MAX_ERROR_CHARS * 3 // 5, MAX_ERROR_CHARS // 5
    return f"{text[:head]} [... {len(text) - head - tail} characters left out ...] {text[-tail:]}"
