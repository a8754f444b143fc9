"""The worker side of the Ray executor: what a Ray actor holds and how trials are grouped for it.

A :class:`TrialWorker` is one Ray actor's state: the driver's run context, read once
from Ray's object store (the model, the decoded and normalized images, the session
factory; workers on one node map the same shared-memory copy), and the prefix-reuse
state that :func:`onnxnoise.engine.trial.run_trial` keeps in it from trial to trial.
:func:`group_trials` cuts a plan into the units one worker takes at a time, so that
prefix reuse still pays; :class:`WorkerPool` is the driver's handle on the workers of one
context (loading them, again after a restart). The executor is
:mod:`onnxnoise.engine.ray_executor`.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

from onnxnoise.engine.context import RunContext, package_versions
from onnxnoise.engine.plan import PlannedTrial, Trial
from onnxnoise.engine.trial import clean_outcomes, run_trial
from onnxnoise.errors import ConfigError, OnnxNoiseError

__all__ = ["RAY_MISSING", "START_TIMEOUT_S", "LOAD_DEATHS", "import_ray", "group_trials", "describe_trial",
           "portable_context", "TrialWorker", "WorkerPool"]

#: The one line shown when ``--executor ray`` is asked for without Ray installed.
RAY_MISSING = "`--executor ray` needs Ray, which is not installed: pip install 'onnxnoise[ray]'"


def import_ray():
    """The ``ray`` module.

    Raises:
        ConfigError: Ray is not installed (:data:`RAY_MISSING`).
    """
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    return ray


def group_trials(planned: Sequence[PlannedTrial], workers: int = 1) -> list[list[PlannedTrial]]:
    """Split planned trials into the units handed to one worker.

    Per-layer trials of one layer form a group (every strength and seed, in plan order),
    so a worker computes that layer's clean cut once for the whole group; groups come in
    order of first appearance in the plan, which is layer order, so a worker taking
    groups one after another only moves its cut forward. Other trials (baseline,
    ``all``, ``cumulative``) run on the full model and are groups of one. When there are
    fewer layer groups than workers, each layer group is cut into contiguous pieces so
    every worker gets work.

    Args:
        planned: Keyed trials in plan order.
        workers: Number of workers that will take groups (>= 1).

    Returns:
        The groups, in dispatch order; together they hold every trial exactly once.
    """
    order: list[tuple[str, int | None]] = []
    members: dict[tuple[str, int | None], list[PlannedTrial]] = {}
    for i, item in enumerate(planned):
        trial = item.trial
        key = ("layer", trial.layer_index) if trial.mode == "per-layer" else ("one", i)
        if key not in members:
            order.append(key)
            members[key] = []
        members[key].append(item)
    layer_groups = sum(key[0] == "layer" for key in order)
    pieces = -(-workers // layer_groups) if 0 < layer_groups < workers else 1
    groups = []
    for key in order:
        group = members[key]
        size = -(-len(group) // pieces)
        groups.extend(group[start:start + size] for start in range(0, len(group), size))
    return groups


def describe_trial(trial: Trial) -> str:
    """``"the per-layer layer 3 trial at strength 10, seed 1"``: a trial in words, for messages."""
    if trial.mode == "baseline":
        return "the baseline trial"
    where = f" layer {trial.layer_index}" if trial.layer_index is not None else ""
    return f"the {trial.mode}{where} trial at strength {trial.strength:g}, seed {trial.seed}"


def portable_context(context: RunContext) -> RunContext:
    """A copy of ``context`` to put in Ray's object store: without per-process state.

    The prefix runner (cut activations, sessions) and batches uploaded to a GPU stay
    with the process that made them; everything else (model, images, normalized
    batches, session factory, clean outcomes) is shared by reference.
    """
    data = copy.copy(context.data)
    data._device = None
    return dataclasses.replace(context, data=data, _prefix=None)


class TrialWorker:
    """A Ray actor's state: one run context, kept for every trial the actor runs.

    The driver creates the actor, then calls :meth:`load` (again after Ray restarts a
    worker whose process died) and :meth:`run` per trial; an actor runs its calls one at
    a time, in submission order.

    Args:
        prefix_reuse: Evaluate per-layer trials through the context's prefix runner.
        threads: ONNX Runtime intra-op threads of this worker's sessions (CPU EP, >= 1).
    """

    def __init__(self, *, prefix_reuse: bool, threads: int) -> None:
        self.prefix_reuse = prefix_reuse
        self.threads = threads
        self.context: RunContext | None = None

    def load(self, stored: list[Any], clean: Any = None) -> dict[str, Any]:
        """Take the run context and check that this worker can run its trials.

        Args:
            stored: ``[ref]``: the Ray object reference of :func:`portable_context` of the
                driver's context (in a list, so Ray passes the reference and the driver
                keeps the object alive). Its numpy arrays arrive read-only, mapped from
                the node's shared object store.
            clean: The clean model's per-image outcomes, if the driver has them.

        Returns:
            ``{"pid": int, "node": str, "problem": str | None}``; ``problem`` names a
            package version or an execution provider that differs from the driver's
            (the trial keys hash them, so such a worker must not run trials).
        """
        ray = import_ray()
        context: RunContext = ray.get(stored[0])
        context.config = dataclasses.replace(context.config, threads=self.threads)
        context.factory.threads = self.threads
        if clean is not None:
            context.clean_outcomes = clean
        node = socket.gethostname()
        here = package_versions()
        differ = [f"{name} {here.get(name)} (driver: {version})" for name, version in context.versions.items()
                  if here.get(name) != version]
        problem = None
        if differ:
            problem = (f"the Ray worker on {node} has {', '.join(differ)}; install the same versions on every "
                       "node (they can change counts and are part of every trial key)")
        else:
            try:
                provider = context.factory.create().provider
            except OnnxNoiseError as exc:
                provider, problem = None, f"the Ray worker on {node} cannot create a session: {exc}"
            if problem is None and provider != context.provider:
                problem = (f"the Ray worker on {node} runs {provider} but the driver resolved {context.provider}; "
                           "run the driver on a machine with the same execution provider as the workers")
        self.context = None if problem else context
        return {"pid": os.getpid(), "node": node, "problem": problem}

    def clean_reference(self, stored: dict[str, Any] | None) -> Any:
        """Measure the clean per-image outcomes with :func:`~onnxnoise.engine.trial.clean_outcomes`.

        Args:
            stored: The recorded baseline row, which the clean pass must match.

        Raises:
            BaselineError: The clean pass fails or differs from ``stored``.
        """
        return clean_outcomes(self.context, stored=stored)

    def adopt_clean(self, outcomes: Any) -> None:
        """Take the clean model's per-image outcomes measured by another worker's baseline."""
        if self.context is not None:
            self.context.clean_outcomes = outcomes

    def run(self, trial: Trial) -> tuple[dict[str, Any], Any] | None:
        """Run one trial with :func:`run_trial`.

        Returns:
            ``(row, clean outcomes)``: the trial row, and for a successful baseline the
            context's clean per-image outcomes (to share with the other workers), else
            None; ``None`` instead of the pair when no context is loaded (a restarted
            process that the driver has not reloaded yet).
        """
        if self.context is None:
            return None
        row = run_trial(self.context, trial, prefix_reuse=self.prefix_reuse)
        clean = None
        if trial.mode == "baseline" and row["error"] is None:
            clean = self.context.clean_outcomes
        return row, clean


#: Seconds to wait for workers to start or reload (placement, context transfer, session probe).
START_TIMEOUT_S = 600

#: Worker deaths while loading the context, in one :meth:`WorkerPool.load`, before giving up.
LOAD_DEATHS = 3


def _last_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[-1] if lines else type(exc).__name__


class WorkerPool:
    """The driver's handle on the worker actors of one run context, and the stored context they load.

    Args:
        ray: The ``ray`` module.
        context: The driver's run context; :func:`portable_context` of it is put in
            Ray's object store once and kept alive here, so restarted workers can reload it.
        actors: The :class:`TrialWorker` actor handles.

    Attributes:
        pids, nodes: Process id and host name of each worker as last loaded.
        loaded: Whether each worker holds the context (False after its process died).
        has_clean: Whether each worker holds the clean per-image outcomes.
    """

    def __init__(self, ray, context: RunContext, actors: list[Any]) -> None:
        self.ray = ray
        self.context = context
        self.ref = ray.put(portable_context(context))  # kept alive here: restarted workers reload it
        self.actors = actors
        self.pids = [0] * len(actors)
        self.nodes = [""] * len(actors)
        self.loaded = [False] * len(actors)
        self.has_clean = [False] * len(actors)

    def load(self, indices: Sequence[int]) -> None:
        """Load the context into these workers (in parallel) and check them.

        A worker that Ray is restarting is waited for; one that dies while loading is
        tried again, up to :data:`LOAD_DEATHS` times in all.

        Raises:
            OnnxNoiseError: A worker did not start within :data:`START_TIMEOUT_S`, kept
                dying, or cannot run this context (package versions or execution provider).
        """
        ray = self.ray
        clean = self.context.clean_outcomes
        deadline = time.monotonic() + START_TIMEOUT_S
        deaths = 0
        todo = list(indices)
        while todo:
            calls = [(i, self.actors[i].load.remote([self.ref], clean)) for i in todo]
            todo = []
            for i, ref in calls:
                try:
                    info = ray.get(ref, timeout=max(1.0, deadline - time.monotonic()))
                except ray.exceptions.GetTimeoutError:
                    raise OnnxNoiseError(f"the Ray workers did not start within {START_TIMEOUT_S} s; is the cluster "
                                         "busy? (`ray status`)") from None
                except ray.exceptions.RayActorError as exc:
                    deaths += not isinstance(exc, ray.exceptions.ActorUnavailableError)  # else: restarting
                    if deaths > LOAD_DEATHS or time.monotonic() > deadline:
                        raise OnnxNoiseError(f"a Ray worker could not start: {_last_line(exc)}") from None
                    todo.append(i)
                    continue
                except ray.exceptions.RayError as exc:
                    raise OnnxNoiseError(f"a Ray worker could not start: {_last_line(exc)}") from None
                if info["problem"]:
                    raise OnnxNoiseError(info["problem"])
                self.pids[i], self.nodes[i] = info["pid"], info["node"]
                self.loaded[i], self.has_clean[i] = True, clean is not None
            if todo:
                time.sleep(0.2)

    def kill(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
