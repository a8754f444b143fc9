"""Graph edits of a session factory's skeleton: the analog tile's stages inserted per trial, cached.

A :class:`GraphEdit` says how one trial's graph differs from the clean model's beyond its
replaced weights: ``apply`` rewrites the *skeleton* (the model without the replaceable
initializers, :class:`onnxnoise.engine.runtime.SessionFactory`) and names the extra graph outputs
it adds (the counters). The rewrite keeps every weight initializer's name, so the replacement
tensors appended per trial still land where they belong. :class:`StagedSkeletons` keeps the most
recent rewritten skeletons by ``key`` (whole-model trials: one per seed; per-layer trials: one per
layer and seed): a rewrite runs once per key, a session is still built anew for every trial (read
noise restarts its sequence in each new session, so every trial sees the same noise per batch).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field

import onnx

__all__ = ["GraphEdit", "StagedSkeletons", "SKELETONS_KEPT"]

#: Rewritten skeletons one factory keeps (least recently used dropped first).
SKELETONS_KEPT = 32


@dataclass(frozen=True)
class GraphEdit:
    """How one trial's graph differs from the clean skeleton, and where its counters go.

    Attributes:
        key: Identifies the rewrite (equal keys: equal rewritten graphs), e.g.
            ``(layer names, seed)``.
        apply: ``skeleton ModelProto -> (rewritten ModelProto, {extra graph output: counter})``;
            may change the model it is given (a fresh copy each call).
        tally: ``counter -> total`` that the trial's session adds its counters to
            (:attr:`onnxnoise.engine.session.Session.tally`); read after the evaluation.
    """

    key: Hashable
    apply: Callable[[onnx.ModelProto], tuple[onnx.ModelProto, Mapping[str, str]]] = field(compare=False)
    tally: dict[str, int] = field(default_factory=dict, compare=False)


class StagedSkeletons:
    """Serialized rewritten skeletons of one factory, by :attr:`GraphEdit.key`, least recently used dropped.

    Args:
        skeleton: The factory's serialized skeleton.
        kept: Most rewritten skeletons kept.
    """

    def __init__(self, skeleton: bytes, kept: int = SKELETONS_KEPT) -> None:
        self._skeleton = skeleton
        self._kept = kept
        self._cache: OrderedDict[Hashable, tuple[bytes, dict[str, str]]] = OrderedDict()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        """Pickled without its lock (a Ray worker receives the run context, and this cache with it)."""
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def get(self, edit: GraphEdit) -> tuple[bytes, dict[str, str]]:
        """``(serialized rewritten skeleton, {graph output: counter})`` of ``edit`` (rewritten once per key).

        Safe to call from several threads (whole-model trials side by side, :mod:`onnxnoise.engine.layout`).
        """
        with self._lock:
            if edit.key in self._cache:
                self._cache.move_to_end(edit.key)
                return self._cache[edit.key]
            model = onnx.ModelProto()
            model.ParseFromString(self._skeleton)
            staged, counters = edit.apply(model)
            entry = (staged.SerializeToString(), dict(counters))
            self._cache[edit.key] = entry
            while len(self._cache) > self._kept:
                self._cache.popitem(last=False)
            return entry

    def __len__(self) -> int:
        return len(self._cache)
