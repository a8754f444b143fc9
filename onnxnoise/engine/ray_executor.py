"""Ray executor: a run's trials on Ray actors, every row recorded by the driver.

:class:`RayExecutor` is the :class:`~onnxnoise.engine.executor.Executor` of
``onnxnoise sweep --executor ray``. The driver (the process that prepared the run
context and planned the trials) puts the context once into Ray's object store; each
worker actor (:class:`~onnxnoise.engine.ray_worker.TrialWorker`) reads it from there,
without opening the model or data files or decoding an image, and keeps it with its
prefix-reuse state for every trial it runs. Workers run trials with
:func:`onnxnoise.engine.trial.run_trial`, the one definition of a trial, and return the
rows; only the driver records them, one committed row per finished trial as results
arrive (``ray.wait``), so a killed driver resumes exactly like a local sweep.

Trials are handed out in groups (:func:`~onnxnoise.engine.ray_worker.group_trials`:
one layer's strengths and seeds together, layers in order), each worker holding at
most its current group and the next. When a worker's process dies, Ray restarts it and
the driver loads the context into it again; the trials it had not returned are run
again first, in their order. A row is recorded only when its result arrives, and
:meth:`~onnxnoise.engine.executor.Recorder.record` refuses a key recorded before, so
nothing is lost and nothing is recorded twice. Noise depends only on (seed, tensor
name), so the counts equal the local executor's.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from onnxnoise.engine.context import RunContext
from onnxnoise.engine.executor import DrawHistory, ExecutionResult, Executor, Progress, Recorder
from onnxnoise.engine.plan import PlannedTrial, draw_group, seed_rule, trial_key
from onnxnoise.engine.ray_reaper import start_reaper
from onnxnoise.engine.ray_worker import TrialWorker, WorkerPool, describe_trial, group_trials, import_ray
from onnxnoise.engine.run_errors import baseline_failure
from onnxnoise.engine.trial import BASELINE_TRIAL
from onnxnoise.errors import ConfigError, OnnxNoiseError

__all__ = ["RayExecutor"]


@dataclass
class _Call:
    """One trial submitted to one worker (``seq``: submission order over the run)."""

    actor: int
    seq: int
    item: PlannedTrial


class RayExecutor(Executor):
    """Runs trials on Ray actors; the calling process (the driver) records every row.

    Args:
        prefix_reuse: Evaluate per-layer trials through each worker's prefix runner.
        address: Ray cluster to connect to (``ray start --head`` prints it, e.g.
            ``10.0.0.1:6379``, or ``auto``); ``None`` starts a local Ray instance for
            this process, unless Ray is already initialized in it.
        workers: Number of worker actors; ``None``: as many as the cluster's CPUs
            (and GPUs, with ``gpus_per_trial``) hold.
        gpus_per_trial: GPUs requested by each worker (a fraction shares a GPU between
            workers); ``0`` runs on CPUs. Needs the CUDA execution provider.
        threads: ONNX Runtime intra-op threads per worker, and the CPUs each requests.
        retries: How often a trial whose worker process died is run again before the
            run stops with an error.

    Raises:
        ConfigError: Ray is not installed (one line naming ``onnxnoise[ray]``), or a
            setting is invalid.
    """

    def __init__(self, *, prefix_reuse: bool = True, address: str | None = None, workers: int | None = None,
                 gpus_per_trial: float = 0.0, threads: int = 1, retries: int = 3) -> None:
        self._ray = import_ray()
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ConfigError(f"`--workers` must be an integer >= 1, got {workers!r}")
        if not gpus_per_trial >= 0:  # also NaN
            raise ConfigError(f"`--gpus-per-trial` must be >= 0, got {gpus_per_trial!r}")
        if threads < 1 or retries < 0:
            raise ConfigError(f"Ray workers need threads >= 1 and retries >= 0, got {threads} and {retries}")
        self.prefix_reuse = prefix_reuse
        self.address = address
        self.workers = workers
        self.gpus_per_trial = float(gpus_per_trial)
        self.threads = threads
        self.retries = retries
        self._pool: WorkerPool | None = None
        self._started_ray = False

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the current workers (updated when a restarted worker is reloaded)."""
        return list(self._pool.pids) if self._pool else []

    def run(self, context, planned: Sequence[PlannedTrial], recorder: Recorder,
            progress: Progress | None = None) -> ExecutionResult:
        """See :meth:`Executor.run`: trials run on the workers, rows are recorded here.

        Workers start on the first call for ``context`` and serve later calls with the
        same context (e.g. the baseline, then the noisy trials) until :meth:`close`.

        Raises:
            BaselineError: The clean baseline failed (its row is recorded first).
            ConfigError: The cluster cannot hold the workers, or ``gpus_per_trial`` is
                set without the CUDA execution provider.
            OnnxNoiseError: Ray cannot be started or reached, a worker cannot run this
                context (package versions or execution provider differ from the
                driver's), or a trial's worker died more than ``retries`` times.
        """
        progress = progress or Progress()
        progress.start(len(planned), len(context.data))
        if not planned:
            return ExecutionResult(ran=0, failed=0, taken=0)
        return _Dispatch(self, self._pool_for(context), recorder, progress).run(planned)

    def close(self) -> None:
        """Stop the workers, and the local Ray instance if this executor started it."""
        self.close_workers()
        if self._started_ray:
            self._ray.shutdown()
            self._started_ray = False

    def close_workers(self) -> None:
        """Stop the workers of the current context (Ray itself stays up)."""
        if self._pool is not None:
            self._pool.kill()
            self._pool = None

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self) -> None:
        ray = self._ray
        if self.address is not None:
            _check_reachable(self.address)
        if ray.is_initialized():
            return
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "WARNING"}
        if self.address is None:
            cpus = os.cpu_count() or 1
            if self.workers is not None:
                cpus = max(cpus, self.workers * self.threads)  # the user asked for this many
            options.update(address="local", num_cpus=cpus)
            start_reaper()  # a killed driver leaves no Ray process (where it leads its own session)
        else:
            options.update(address=self.address)
        try:
            ray.init(**options)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
            raise OnnxNoiseError(f"could not start or reach {where}: {str(exc).strip().splitlines()[0]}") from None
        self._started_ray = self.address is None

    def _worker_count(self) -> int:
        total = self._ray.cluster_resources()
        cpus, gpus = float(total.get("CPU", 0)), float(total.get("GPU", 0))
        fit = int(cpus // self.threads)
        if self.gpus_per_trial > 0:
            fit = min(fit, int(gpus / self.gpus_per_trial + 1e-9))
        want = self.workers if self.workers is not None else fit
        if fit < 1 or want > fit:
            need = f"{self.threads} CPU(s)" + (f" and {self.gpus_per_trial:g} GPU" if self.gpus_per_trial else "")
            raise ConfigError(f"the Ray cluster has {cpus:g} CPUs and {gpus:g} GPUs: {want} worker(s) of {need} "
                              f"each do not fit; lower `--workers` (at most {fit}) or add nodes")
        return want

    def _pool_for(self, context: RunContext) -> WorkerPool:
        if self._pool is not None and self._pool.context is context:
            return self._pool
        self.close_workers()
        if self.gpus_per_trial > 0 and context.provider != "CUDAExecutionProvider":
            raise ConfigError(f"`--gpus-per-trial` needs the CUDA execution provider, but this run resolved "
                              f"{context.provider}; pass `--device cuda` with onnxruntime-gpu installed (the driver "
                              "prepares the run, so its machine needs the GPU runtime too)")
        self._connect()
        count = self._worker_count()
        actor_class = self._ray.remote(TrialWorker).options(
            num_cpus=self.threads, num_gpus=self.gpus_per_trial, max_restarts=-1, max_task_retries=0)
        actors = [actor_class.remote(prefix_reuse=self.prefix_reuse, threads=self.threads) for _ in range(count)]
        pool = WorkerPool(self._ray, context, actors)
        try:
            pool.load(range(count))
        except OnnxNoiseError:
            pool.kill()
            raise
        self._pool = pool
        return pool


#: What a client sends first on an HTTP/2 connection (RFC 9113 section 3.4): the preface, then an empty
#: SETTINGS frame. Ray's GCS and its client server (``ray://``) are gRPC servers, which speak HTTP/2.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_SETTINGS_FRAME = 4
#: Seconds to wait for the connection, and then again for the server's first frame.
_PROBE_SECONDS = 5.0


def _first_frame_type(conn: socket.socket) -> int | None:
    """Type of the first HTTP/2 frame the server sends (byte 3 of its 9-byte header), None when it hangs up."""
    head = b""
    while len(head) < 9:
        chunk = conn.recv(9 - len(head))
        if not chunk:
            return None
        head += chunk
    return head[3]


def _check_reachable(address: str, seconds: float = _PROBE_SECONDS) -> None:
    """Refuse a ``host:port`` (or ``ray://host:port``) that is not a Ray cluster, within about ``2 * seconds``.

    Ray itself retries an unreachable address for minutes, printing a warning every few
    seconds, and waits as long on a port where something else listens. So the port must
    take a connection within ``seconds`` and answer the HTTP/2 preface with a SETTINGS
    frame (RFC 9113 section 3.4; every gRPC server does, Ray's GCS and client server are
    gRPC servers) within ``seconds`` more. With ``RAY_USE_TLS`` set the port speaks TLS
    first, so only the connection is checked. ``auto`` and other forms without a port are
    left to Ray.

    Raises:
        OnnxNoiseError: The host is unknown, nothing accepts connections on the port, or
            what listens there does not answer as a gRPC server.
    """
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    advice = ("give the head node's address as `ray start --head` printed it (`ray status` on the head shows it), "
              "or leave out --address to start a local Ray instance")
    try:
        conn = socket.create_connection((host, int(port)), timeout=seconds)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OnnxNoiseError(f"cannot reach the Ray cluster at {address} ({reason}): {advice}") from None
    with conn:
        if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
            return
        try:
            conn.sendall(_HTTP2_PREFACE)
            frame = _first_frame_type(conn)
        except TimeoutError:
            frame, reason = None, f"no answer within {seconds:g} s"
        except OSError as exc:
            frame, reason = None, exc.strerror or type(exc).__name__
        else:
            reason = "it closed the connection" if frame is None else "it answered something else than HTTP/2"
    if frame != _SETTINGS_FRAME:
        raise OnnxNoiseError(f"{address} is not a Ray cluster: what listens there does not answer as Ray's gRPC "
                             f"server ({reason}); {advice}")


class _Dispatch:
    """One :meth:`RayExecutor.run`: hand out groups, record rows as they arrive, re-run lost trials.

    With ``--seeds auto`` a draw is decided as by the local executor (the module doc of
    :mod:`onnxnoise.engine.executor`): a trial waits with its worker until every lower
    seed of its group is resolved, then runs, or is skipped when those draws are enough.
    """

    def __init__(self, executor: RayExecutor, pool: WorkerPool, recorder: Recorder, progress: Progress) -> None:
        self.ray = executor._ray
        self.retries = executor.retries
        self.pool = pool
        self.recorder = recorder
        self.progress = progress
        workers = len(pool.actors)
        self.pending: dict[Any, _Call] = {}
        self.load = [0] * workers
        self.held: list[list[PlannedTrial]] = [[] for _ in range(workers)]  # given to a worker, not yet submitted
        self.seq = 0
        self.death_mark = [-1] * workers  # calls up to this seq belong to a death already counted
        self.retry: list[_Call] = []
        self.deaths: dict[str, int] = {}
        self.rule = seed_rule(pool.context.config.noise)
        self.draws = DrawHistory(pool.context, recorder, self.rule)
        self.open: dict[tuple, set[int]] = {}  # --seeds auto: seeds of each group not resolved yet
        self.ran = self.failed = self.taken = self.settled = 0

    def run(self, planned: Sequence[PlannedTrial]) -> ExecutionResult:
        if self.rule is not None:
            for item in planned:
                if item.trial.mode != "baseline":
                    self.open.setdefault(draw_group(item.trial), set()).add(item.trial.seed)
        if any(item.trial.mode != "baseline" for item in planned) and self.pool.context.clean_outcomes is None:
            self._clean_reference()
        queue = deque(group_trials(planned, len(self.pool.actors)))
        while queue or self.pending or self.retry or any(self.held):
            if self.retry:  # a dead worker's trials first, in their original order
                queue.appendleft([call.item for call in sorted(self.retry, key=lambda call: call.seq)])
                self.retry = []
            for actor in range(len(self.pool.actors)):
                while queue and self.load[actor] + len(self.held[actor]) <= 1:  # next group waits behind the last
                    self.held[actor].extend(queue.popleft())
                    self._release(actor)
            while queue and not self.pending:  # every worker waits on draws that are still queued: hand them out
                actor = min(range(len(self.pool.actors)), key=lambda a: len(self.held[a]))
                self.held[actor].extend(queue.popleft())
                self._release(actor)
            if not self.pending:
                if any(self.held):
                    raise RuntimeError("Ray executor: trials wait for draws that nothing runs")  # a bug, not input
                continue
            ready, _ = self.ray.wait(list(self.pending), num_returns=1)
            for ref in ready:
                self._collect(ref)
            for actor in range(len(self.pool.actors)):
                self._release(actor)
        return ExecutionResult(ran=self.ran, failed=self.failed, taken=self.taken, settled=self.settled)

    def _get(self, ref: Any, **kwargs: Any) -> Any:
        """``ray.get``, with an error the worker raised (e.g. ``BaselineError``) raised as itself."""
        try:
            return self.ray.get(ref, **kwargs)
        except self.ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, OnnxNoiseError):
                raise exc.cause from None
            raise

    def _clean_reference(self) -> None:
        """The clean per-image outcomes (paired counts' reference) when no baseline ran now: a resumed sweep.

        Worker 0 runs the clean pass and checks it against the recorded baseline row, as
        :class:`~onnxnoise.engine.executor.LocalExecutor` does.
        """
        context = self.pool.context
        if not self.pool.loaded[0]:
            self.pool.load([0])
        stored = self.recorder.find(trial_key(BASELINE_TRIAL, context.key_fields()))
        context.clean_outcomes = self._get(self.pool.actors[0].clean_reference.remote(stored))
        self.pool.has_clean[0] = True

    def _release(self, actor: int) -> None:
        """Submit the worker's held trials that can be decided, in order; skip settled and recorded ones."""
        keep: list[PlannedTrial] = []
        for item in self.held[actor]:
            trial = item.trial
            if self.rule is not None and trial.mode != "baseline":
                if min(self.open[draw_group(trial)]) < trial.seed:
                    keep.append(item)  # a lower seed of its group is still running
                    continue
                if self.draws.settled(trial):
                    self.settled += 1
                    self._resolve(trial)
                    continue
            if self.recorder.has(item.key):
                self.taken += 1
                self._resolve(trial)
                continue
            self._submit(actor, item)
        self.held[actor] = keep

    def _submit(self, actor: int, item: PlannedTrial) -> None:
        pool = self.pool
        if not pool.loaded[actor]:
            pool.load([actor])
        clean = pool.context.clean_outcomes
        handle = pool.actors[actor]
        if clean is not None and not pool.has_clean[actor]:
            handle.adopt_clean.remote(clean)  # an actor runs calls in submission order: before this trial
            pool.has_clean[actor] = True
        self.pending[handle.run.remote(item.trial)] = _Call(actor, self.seq, item)
        self.seq += 1
        self.load[actor] += 1

    def _resolve(self, trial) -> None:
        if self.rule is not None and trial.mode != "baseline":
            self.open[draw_group(trial)].discard(trial.seed)

    def _collect(self, ref: Any) -> None:
        call = self.pending.pop(ref)
        self.load[call.actor] -= 1
        try:
            result = self._get(ref)
        except self.ray.exceptions.RayActorError:
            self._worker_died(call)
            return
        if result is None:  # a restarted process that was not reloaded yet: run it again, no charge
            if call.seq > self.death_mark[call.actor]:
                self.pool.loaded[call.actor] = False
            self.retry.append(call)
            return
        row, clean = result
        if clean is not None:
            self.pool.context.clean_outcomes = clean
            self.pool.has_clean[call.actor] = True
        self._record(call.item, row)

    def _record(self, item: PlannedTrial, row: dict[str, Any]) -> None:
        context = self.pool.context
        row.update(key=item.key, key_version=item.key_version)
        recorded = self.recorder.record(row)
        self._resolve(item.trial)
        if not recorded:
            self.taken += 1
            return
        self.ran += 1
        self.failed += row["error"] is not None
        self.draws.add(item.trial, row)
        self.progress.advance(len(context.data))
        self.progress.trial_done(row)
        if item.trial.mode == "baseline" and row["error"] is not None:
            raise baseline_failure(context, row["error"])

    def _worker_died(self, call: _Call) -> None:
        """``call`` failed because its worker's process died: run it again; charge the death once.

        An actor runs its calls in order, so of the calls outstanding when it died the
        oldest was running: that trial is charged with the death, the others run again
        free. Ray restarts the actor; the next submission to it reloads the context.
        """
        actor = call.actor
        self.retry.append(call)
        if call.seq <= self.death_mark[actor]:
            return
        self.pool.loaded[actor] = False
        outstanding = [c for c in self.pending.values() if c.actor == actor]
        culprit = min([call, *outstanding], key=lambda c: c.seq).item
        self.death_mark[actor] = self.seq - 1
        self.deaths[culprit.key] = self.deaths.get(culprit.key, 0) + 1
        if self.deaths[culprit.key] > self.retries:
            raise OnnxNoiseError(
                f"{describe_trial(culprit.trial)} was lost {self.deaths[culprit.key]} times (its Ray worker process "
                "died each time; out of memory? see `ray logs`); finished trials are recorded, run the same command "
                "to resume")
