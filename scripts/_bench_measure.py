"""Measuring helpers of ``scripts/bench_throughput.py``: intervals, maxima, targets, clean layouts, trial
timing, RSS, data.

The only inference run here is the clean reference (:func:`run_clean`, in each clean layout);
:func:`instrument` wraps the engine's own calls (``draw_noise`` in :mod:`onnxnoise.engine.trial`,
``context.factory.create`` and the sessions it returns), so per-trial figures are those of the trials
the engine ran.
"""

from __future__ import annotations

import math
import os
import pickle
import platform
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

import onnxnoise.engine.trial as trial_module
from onnxnoise.data import open_dataset
from onnxnoise.data.cache import load_images_cached
from onnxnoise.engine.evaluate import evaluate
from onnxnoise.report.stats import t_half_width

#: Ratios that cannot exceed a physical maximum: a noisy whole-model trial does a clean pass's
#: work plus noise, a session build and a cold first run, so its throughput is at most clean's.
PHYSICAL_MAX = {"all/clean": 1.0, "all-one/clean": 1.0, "no-prefix/clean": 1.0}


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and two-sided 95% Student t half-width (NaN for fewer than two values)."""
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return math.nan, math.nan
    mean = float(np.mean(values))
    half = float(t_half_width(np.std(values, ddof=1), len(values))) if len(values) > 1 else math.nan
    return mean, half


def ratio_summary(name: str, values: list[float], *, maximum: float | None = None,
                  maximum_name: str = "physical maximum") -> dict:
    """``{"name", "rounds", "mean", "ci95", "low", "maximum", "maximum_name", "measuring_error"}`` of per-round ratios.

    ``low`` is the lower bound of the two-sided 95% Student t interval (the mean with one round).
    ``maximum``: the most the ratio can be (default :data:`PHYSICAL_MAX` by name; the upper end of the
    time ideal of prefix reuse for per-layer ratios, ``maximum_name="time ideal (upper end)"``).
    ``measuring_error`` is set when the mean is above it: such a figure measures the machine, not the
    method, and never meets a target (:func:`target_met`).
    """
    mean, half = mean_ci(values)
    maximum = PHYSICAL_MAX.get(name) if maximum is None else maximum
    error = None
    if maximum is not None and mean > maximum:
        where = "its whole 95% interval is above it" if mean - half > maximum else "within noise of it"
        error = (f"MEASURING ERROR: {name} = {mean:.3f} is above its {maximum_name} {maximum:.3f} ({where}); "
                 "the machine's load changed between the sides: rerun on a quiet machine with more --repeats")
    low = mean - half if math.isfinite(half) else mean
    return {"name": name, "rounds": values, "mean": mean, "ci95": half, "low": low, "maximum": maximum,
            "maximum_name": maximum_name if maximum is not None else None, "measuring_error": error}


def target_met(summary: dict, target: float) -> bool:
    """Whether a ratio meets ``target``: its 95% lower bound at or above it, and no measuring error.

    A ratio above its maximum (physical, or the time ideal) never meets a target, however high.
    """
    return summary["measuring_error"] is None and summary["low"] >= target


def format_ratio(r: dict) -> str:
    ci = "n/a (1 round)" if not math.isfinite(r["ci95"]) else f"{r['ci95']:.3f}"
    rounds = ", ".join(f"{x:.3f}" for x in r["rounds"])
    limit = f"; {r['maximum_name']} {r['maximum']:.3f}" if r["maximum"] is not None else ""
    return (f"{r['name']:>20}: {r['mean']:.3f}x ± {ci}, lower bound {r['low']:.3f} (95% t, rounds {rounds}"
            f"{limit})")


# -- clean layouts ----------------------------------------------------------------


def clean_layouts(threads: int, cpus: int) -> dict[str, tuple[int, int]]:
    """The clean layouts a benchmark compares: ``name -> (sessions side by side, intra-op threads each)``.

    ``T = threads`` (0: ``cpus``): ``clean-1x{T}`` one session with ``T`` threads (``threads`` as given:
    0 is ONNX Runtime's default) and, for ``T >= 2``, ``clean-{T}x1``: ``T`` one-thread sessions side by
    side, each on the whole data set (the layout the engine runs noisy trials in,
    :func:`onnxnoise.engine.layout.whole_model_layout`). E.g. ``(0, 2)``: ``{"clean-1x2": (1, 0),
    "clean-2x1": (2, 1)}``.
    """
    total = threads or cpus
    layouts = {f"clean-1x{total}": (1, threads)}
    if total >= 2:
        layouts[f"clean-{total}x1"] = (total, 1)
    return layouts


def run_clean(sessions: list, data, passes: int | None = None) -> dict:
    """Clean passes over ``data``, timed: images/s over every pass's images (wall and CPU time).

    One session: one pass. Several (a side-by-side layout): ``passes`` passes (default one per session)
    queued over the sessions, each session on its own thread taking the next pass as soon as its last
    one ends: the queue the engine runs whole-model trials in (:mod:`onnxnoise.engine.layout`). With as
    many passes as the trial side has trials, both sides end on the same kind of tail (the last wave,
    where sessions finish one by one and cores fall idle), so the trials' ratio to this layout cannot
    exceed 1 by the clean side's tail alone (ResNet56, 4 trials on 2 cores: a one-pass-per-session
    reference left a longer idle tail than the 2-wave trial side).
    """
    count = passes or len(sessions)
    wall, cpu = time.perf_counter(), time.process_time()
    if len(sessions) == 1:
        evaluate(sessions[0], data)
        count = 1
    else:
        queue = iter(range(count))
        lock = threading.Lock()

        def worker(session) -> None:
            while True:
                with lock:
                    if next(queue, None) is None:
                        return
                evaluate(session, data)

        with ThreadPoolExecutor(len(sessions)) as pool:
            list(pool.map(worker, sessions))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    images = count * len(data)
    return {"images_per_s": images / wall, "images_per_cpu_s": images / cpu, "wall_s": wall, "passes": count}


def best_clean(rounds: list[dict], names: list[str]) -> str:
    """The clean layout with the higher mean images/s over the rounds (the reference of every ratio)."""
    return max(names, key=lambda name: mean_ci([r[name]["images_per_s"] for r in rounds])[0])


# -- process memory ----------------------------------------------------------------


def _status(field_name: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    return math.nan


def rss_mb() -> float:
    """Current resident set size in MiB (``VmRSS``)."""
    return _status("VmRSS")


def peak_rss_mb() -> float:
    """Peak resident set size in MiB since start or the last :func:`reset_peak_rss` (``VmHWM``)."""
    return _status("VmHWM")


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0, ``/proc/self/clear_refs`` value 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor())
    mem = next((int(line.split()[1]) / 1024**2 for line in open("/proc/meminfo") if line.startswith("MemTotal")), 0)
    return {"nproc": os.cpu_count(), "cpu": model, "ram_gib": round(mem, 1), "onnxruntime": ort.__version__,
            "python": platform.python_version(), "load_average": os.getloadavg()}


# -- trial timing ----------------------------------------------------------------


@dataclass
class SessionTiming:
    """One session built by the engine with noisy weights: build time and each ``run`` (seconds)."""

    build_s: float
    runs: list[float] = field(default_factory=list)

    @property
    def cold_extra_s(self) -> float:
        """First run minus the median of the others: what a new session's cold first run costs."""
        if len(self.runs) < 2:
            return math.nan
        steady = self.runs[1:-1] or self.runs[1:]  # the last batch may be short
        return self.runs[0] - float(np.median(steady))


@dataclass
class TrialTiming:
    """What :func:`instrument` saw: each noise draw and each noisy full-model session."""

    noise_s: list[float] = field(default_factory=list)
    sessions: list[SessionTiming] = field(default_factory=list)


class _TimedSession:
    """Delegates to a :class:`~onnxnoise.engine.runtime.Session`, timing ``run`` / ``run_bound``."""

    def __init__(self, session, timing: SessionTiming) -> None:
        self._session, self._timing = session, timing

    def __getattr__(self, name: str):
        return getattr(self._session, name)

    def _timed(self, method, batch):
        started = time.perf_counter()
        out = method(batch)
        self._timing.runs.append(time.perf_counter() - started)
        return out

    def run(self, batch):
        return self._timed(self._session.run, batch)

    def run_bound(self, batch):
        return self._timed(self._session.run_bound, batch)


class _TimedFactory:
    """Stands in for ``context.factory``: times every ``create`` with noisy weights and the session's runs."""

    def __init__(self, factory, timing: TrialTiming) -> None:
        self._factory, self._timing = factory, timing

    def __getattr__(self, name: str):
        return getattr(self._factory, name)

    def create(self, replacements=None, **kwargs):
        started = time.perf_counter()
        session = self._factory.create(replacements, **kwargs)
        if not replacements:
            return session
        timing = SessionTiming(time.perf_counter() - started)
        self._timing.sessions.append(timing)
        return _TimedSession(session, timing)


@contextmanager
def instrument(context) -> Iterator[TrialTiming]:
    """Time the noise draw, the full-model session build and every run inside the engine's trials."""
    timing = TrialTiming()
    draw, factory = trial_module.draw_noise, context.factory

    def timed_draw(*args, **kwargs):
        started = time.perf_counter()
        result = draw(*args, **kwargs)
        timing.noise_s.append(time.perf_counter() - started)
        return result

    trial_module.draw_noise = timed_draw
    context.factory = _TimedFactory(factory, timing)
    try:
        yield timing
    finally:
        trial_module.draw_noise = draw
        context.factory = factory


# -- data ------------------------------------------------------------------------


def time_cache(context, repeats: int) -> dict:
    """Decoded-image cache: miss (decode + write) vs hit (open + read every pixel), ``repeats`` rounds.

    Each round decodes into a fresh cache folder, then loads the entry again and reads every
    pixel of it (a sum over all bytes); the hit must equal the decoded images bit for bit. The
    hit is served from the page cache (the entry was just written): a cold-disk hit is slower.
    """
    config = context.config
    dataset = open_dataset(config.data, ground_truth=config.ground_truth, limit=config.limit, strict=config.strict)
    misses, hits, ratios = [], [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            first = load_images_cached(dataset, context.data_config, cache_dir=tmp, strict=config.strict)
            total_first = int(first.images.sum(dtype=np.uint64))
            t1 = time.perf_counter()
            second = load_images_cached(dataset, context.data_config, cache_dir=tmp, strict=config.strict)
            total_second = int(np.asarray(second.images).sum(dtype=np.uint64))
            t2 = time.perf_counter()
            if total_first != total_second or not np.array_equal(first.images, second.images):
                raise AssertionError("a cache hit returned other pixels than decoding")
            misses.append(t1 - t0)
            hits.append(t2 - t1)
            ratios.append((t1 - t0) / (t2 - t1))
    return {"miss_s": misses, "hit_s": hits, "ratio": ratio_summary("decode/cache hit", ratios),
            "images": int(len(first.labels)), "bytes": int(first.images.nbytes)}


def repeated_cifar(source: Path, target: Path, times: int) -> Path:
    """A CIFAR-10 batch folder whose ``test_batch`` repeats ``source``'s test set ``times`` times.

    Written once into ``target`` (reused when it already holds the right number of images);
    never inside the repository.
    """
    from onnxnoise.data.cifar import load_pickle

    target = Path(target)
    repo = Path(__file__).resolve().parent.parent
    if repo in target.resolve().parents or target.resolve() == repo:
        raise ValueError(f"{target} is inside the repository; build the repeated dataset elsewhere (e.g. /tmp)")
    marker = target / f"repeated-{times}x.ok"
    if marker.is_file():
        return target
    batch = load_pickle(Path(source) / "test_batch")
    target.mkdir(parents=True, exist_ok=True)
    data = np.tile(batch["data"], (times, 1))
    labels = [int(v) for v in batch["labels"]] * times
    with open(target / "test_batch", "wb") as fh:
        pickle.dump({b"data": data, b"labels": labels}, fh, protocol=4)
    shutil.copyfile(Path(source) / "batches.meta", target / "batches.meta")
    marker.write_text(f"{len(labels)} images\n")
    return target
