"""Ray executor on a local Ray instance (2 CPUs) started here: same counts as the local executor,
a killed worker loses nothing and records nothing twice, a killed driver resumes."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import onnx
import polars as pl
import pytest
import ray

from onnxnoise.cli import main
from onnxnoise.config import NoiseConfig, RunConfig, SweepConfig, TileConfig
from onnxnoise.engine.context import prepare_context
from onnxnoise.engine.executor import MemoryRecorder, Progress
from onnxnoise.engine.plan import plan_trials
from onnxnoise.engine.ray_executor import RayExecutor, _check_reachable
from onnxnoise.engine.ray_worker import group_trials
from onnxnoise.errors import ConfigError, OnnxNoiseError
from onnxnoise.store.store import open_store
from onnxnoise.sweep import make_executor, run_sweep

from tests._builders import conv_bn_resnet, labeled_npz
from tests._checks import stored_rows as _rows

REPO = Path(__file__).resolve().parents[2]
IMAGES = 200
#: Columns that depend on when and how fast a trial ran, not on what it measured.
TIMING = ("run_id", "finished_at", "seconds")


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance with 2 CPUs for this module; its GCS address."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ray")
    model = conv_bn_resnet()
    onnx.save(model, folder / "model.onnx")
    labeled = labeled_npz(model, folder / "data.npz", n=IMAGES)
    return folder / "model.onnx", folder / "data.npz", labeled


def _config(files, *, seeds: str = "0,1", snr: str = "10,3", modes=("all", "per-layer", "cumulative")) -> SweepConfig:
    model, data, _ = files
    run = RunConfig(model=model, data=data, noise=NoiseConfig.from_options(snr=snr, seeds=seeds), preset="raw",
                    device="cpu", batch_size=64)
    return SweepConfig(run, modes=modes)


def _stored(db: Path) -> pl.DataFrame:
    with open_store(db, create=False) as store:
        return store.to_frame().drop(TIMING).sort("key")


@pytest.fixture(scope="module")
def reference(files, tmp_path_factory):
    """The local executor's rows of the sweep of :func:`_config`."""
    db = tmp_path_factory.mktemp("local") / "trials.sqlite"
    with open_store(db) as store:
        result = run_sweep(_config(files), store)
    assert result.ran == result.planned == 1 + 2 * 2 * (1 + 13 + 13)  # baseline; 2 SNR x 2 seeds x (all, 13, 13)
    return _stored(db)


def test_ray_sweep_counts_equal_local(cluster, files, reference, tmp_path):
    db = tmp_path / "trials.sqlite"
    with RayExecutor(workers=2) as executor, open_store(db) as store:
        result = run_sweep(_config(files), store, executor=executor)
        pids = executor.worker_pids
    assert (result.ran, result.failed, result.taken) == (reference.height, 0, 0)
    assert len(set(pids)) == 2 and os.getpid() not in pids
    got = _stored(db)
    assert got.equals(reference)
    base = got.filter(pl.col("mode") == "baseline")
    assert base["top1_correct"].to_list() == [files[2].top1_correct]  # 70% by construction: 140 of 200
    assert set(got["provider"].to_list()) == {"CPUExecutionProvider"}
    assert got["error"].null_count() == got.height


def test_ray_counts_equal_local_with_the_tile_stages_and_read_noise(cluster, files, tmp_path):
    """Calibrated DAC, ADC on tiles with a fixed range, read noise: Ray workers (prefix reuse on their kept cuts)
    give the local rows, clip counts included.

    The largest calibration activation is also evaluated; without the calibration's margin
    (onnxnoise.tile.calibrate.MARGIN) it sat exactly on the DAC's range and a worker's kept cut, rounding it
    one ulp higher, counted one value more clipped (seen: the Gemm's input, 1 of 2 runs in 3).
    """
    config = _config(files, seeds="1", snr="10", modes=("all", "per-layer"))
    tile = TileConfig(dac_bits=8, adc_bits=6, adc_bound=0.5, read_noise=0.04, tile_rows=16, calibration_images=50)
    config = dataclasses.replace(config, run=dataclasses.replace(config.run, tile=tile))
    stores = {}
    for name in ("local", "ray"):
        with open_store(tmp_path / name / "trials.sqlite") as store:
            context = prepare_context(config.run, calibration_dir=tmp_path / name)
            executor = RayExecutor(workers=2) if name == "ray" else make_executor(config)
            try:
                result = run_sweep(config, store, context=context, executor=executor)
            finally:
                executor.close()
        assert (result.ran, result.failed) == (1 + 1 + 13, 0)
        stores[name] = _stored(tmp_path / name / "trials.sqlite")
    differ = [c for c in stores["ray"].columns if not stores["ray"][c].equals(stores["local"][c])]
    both = stores["ray"].join(stores["local"], on="key")
    assert differ == [], both.filter(pl.col(differ[0]) != pl.col(differ[0] + "_right")).select(
        "mode", "layer_index", "dac_clipped", "dac_clipped_right", "adc_clipped", "adc_clipped_right", "top1_correct",
        "top1_correct_right").rows()
    staged = stores["ray"].filter(pl.col("adc_values") > 0)
    assert staged.height >= 8 and staged["adc_clipped"].sum() > 0  # the whole model and each weight layer


class _KillWorkers(Progress):
    """Kills worker process ``i`` (SIGKILL) when ``at[i]`` rows have been recorded."""

    def __init__(self, executor: RayExecutor, at: dict[int, int]) -> None:
        self.executor, self.at, self.rows, self.killed = executor, at, 0, {}

    def trial_done(self, row: dict) -> None:
        self.rows += 1
        for worker, when in self.at.items():
            if self.rows == when:
                pid = self.executor.worker_pids[worker]
                os.kill(pid, signal.SIGKILL)
                self.killed[worker] = pid


def test_killed_workers_lose_nothing_and_record_nothing_twice(cluster, files, reference, tmp_path):
    db = tmp_path / "trials.sqlite"
    with RayExecutor(workers=2) as executor, open_store(db) as store:
        progress = _KillWorkers(executor, {0: 3, 1: 20})
        result = run_sweep(_config(files), store, executor=executor, progress=progress)
        after = executor.worker_pids
    assert sorted(progress.killed) == [0, 1]
    # both workers were restarted and reloaded (new processes), and every trial was recorded exactly once
    assert after[0] != progress.killed[0] and after[1] != progress.killed[1]
    assert (result.ran, result.failed, result.taken) == (reference.height, 0, 0)
    got = _stored(db)
    assert got["key"].n_unique() == got.height == reference.height
    assert got.equals(reference)


def test_killed_driver_resumes_with_the_remaining_trials(cluster, files, reference, tmp_path):
    model, data, _ = files
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "onnxnoise.cli", "sweep", str(model), "--data", str(data), "--preprocess", "raw",
           "--device", "cpu", "--batch-size", "64", "--mode", "all,per-layer,cumulative", "--snr", "10,3",
           "--seeds", "2", "--executor", "ray", "--address", cluster, "--workers", "2", "--out", str(out)]
    planned = reference.height
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    db = out / "trials.sqlite"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while proc.poll() is None and _rows(db) < 10 and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    kept = _stored(db)
    assert 10 <= kept.height < planned, "the driver was not killed mid-sweep"
    assert kept["key"].n_unique() == kept.height
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{planned} trials planned: {kept.height} already done, {planned - kept.height} run now" in again.stdout
    final = _stored(db)
    assert final["key"].n_unique() == final.height == planned
    # rows stored before the kill are kept as they were, and the whole store equals an uninterrupted local run
    assert final.filter(pl.col("key").is_in(kept["key"].to_list())).equals(kept)
    assert final.equals(reference)


def test_seeds_auto_runs_and_skips_the_same_draws_as_local(cluster, files, tmp_path):
    """--seeds auto decides each draw from the lower seeds of its group: the same draws run on Ray."""
    model, data, _ = files
    run = RunConfig(model=model, data=data, preset="raw", device="cpu", batch_size=64,
                    noise=NoiseConfig.from_options(snr="10,3", seeds="auto", ci_halfwidth=2.0, max_seeds=6))
    config = SweepConfig(run, modes=("per-layer",))
    results = {}
    for name, executor in (("local", None), ("ray", RayExecutor(workers=2))):
        with open_store(tmp_path / f"{name}.sqlite") as store:
            results[name] = run_sweep(config, store, executor=executor)
        if executor is not None:
            executor.close()
    local, remote = results["local"], results["ray"]
    assert local.planned == 1 + 13 * 2 * 6
    assert 0 < local.settled < 13 * 2 * 3  # some groups stopped early, not all at the minimum of 3 draws
    assert (remote.ran, remote.settled, remote.failed) == (local.ran, local.settled, 0)
    assert _stored(tmp_path / "ray.sqlite").equals(_stored(tmp_path / "local.sqlite"))


def test_worker_with_other_package_versions_is_refused(cluster, files):
    context = prepare_context(_config(files).run)
    context.versions = {**context.versions, "onnxruntime": "0.0.1"}
    with RayExecutor(workers=1) as executor, pytest.raises(OnnxNoiseError, match=r"onnxruntime .* \(driver: 0\.0\.1\); "
                                                           r"install the same versions on every node"):
        executor.run(context, plan_trials(context, ["all"]), MemoryRecorder())


def test_without_ray_the_ray_executor_is_one_line(files, monkeypatch, capsys):
    model, data, _ = files
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'onnxnoise\[ray\]'"):
        make_executor(SweepConfig(_config(files).run, executor="ray"))
    code = main(["sweep", str(model), "--data", str(data), "--preprocess", "raw", "--executor", "ray",
                 "--out", str(data.parent / "never")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == ["onnxnoise: error: `--executor ray` needs Ray, which is not installed: "
                                        "pip install 'onnxnoise[ray]'"]
    assert not (data.parent / "never").exists()


@pytest.mark.parametrize(("address", "reason"), [("127.0.0.1:1", "Connection refused"),
                                                 ("no-such-host.invalid:6379", "")])
def test_unreachable_address_is_one_line_at_once(files, capfd, address, reason):
    model, data, _ = files
    started = time.monotonic()
    code = main(["sweep", str(model), "--data", str(data), "--preprocess", "raw", "--executor", "ray",
                 "--address", address, "--out", str(data.parent / "unreachable")])
    err = capfd.readouterr().err.strip().splitlines()
    assert code == 2 and time.monotonic() - started < 60  # Ray alone retries for minutes
    assert len(err) == 1 and err[0].startswith(f"onnxnoise: error: cannot reach the Ray cluster at {address} ({reason}")
    assert "leave out --address to start a local Ray instance" in err[0]
    assert list((data.parent / "unreachable").iterdir()) == []  # no empty trials.sqlite left behind


@pytest.fixture()
def not_ray():
    """A TCP port on 127.0.0.1 where something that is not Ray listens: it accepts, then says nothing
    (``silent``) or answers like an HTTP/1.1 server (``http1``). Yields {kind: "127.0.0.1:port"}."""
    servers: dict[str, socket.socket] = {}
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve(sock: socket.socket, answer: bytes) -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            accepted.append(conn)
            if answer:
                conn.sendall(answer)

    threads = []
    for kind, answer in (("silent", b""), ("http1", b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")):
        sock = socket.create_server(("127.0.0.1", 0))
        servers[kind] = sock
        threads.append(threading.Thread(target=serve, args=(sock, answer), daemon=True))
        threads[-1].start()
    yield {kind: f"127.0.0.1:{sock.getsockname()[1]}" for kind, sock in servers.items()}
    stop.set()
    for thread in threads:
        thread.join()
    for sock in [*servers.values(), *accepted]:
        sock.close()


@pytest.mark.parametrize(("kind", "reason"), [("silent", "no answer within 5 s"),
                                              ("http1", "it answered something else than HTTP/2")])
def test_a_port_that_is_not_ray_is_one_line_within_seconds(files, capfd, not_ray, kind, reason):
    """Ray alone waits minutes on a port where something else listens (measured: over 150 s)."""
    model, data, _ = files
    address = not_ray[kind]
    started = time.monotonic()
    code = main(["sweep", str(model), "--data", str(data), "--preprocess", "raw", "--executor", "ray",
                 "--address", address, "--out", str(data.parent / "not-ray")])
    elapsed = time.monotonic() - started
    err = capfd.readouterr().err.strip().splitlines()
    assert code == 2 and elapsed < 30, elapsed
    assert err == [f"onnxnoise: error: {address} is not a Ray cluster: what listens there does not answer as Ray's "
                   f"gRPC server ({reason}); give the head node's address as `ray start --head` printed it "
                   "(`ray status` on the head shows it), or leave out --address to start a local Ray instance"]


def test_the_probe_accepts_a_real_ray_head(cluster):
    started = time.monotonic()
    _check_reachable(cluster)  # no error: Ray's GCS answers the HTTP/2 preface
    assert time.monotonic() - started < 5


def test_ray_settings_need_the_ray_executor(files, capsys):
    model, data, _ = files
    assert main(["sweep", str(model), "--data", str(data), "--workers", "2"]) == 2
    assert "are Ray settings; add `--executor ray`" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="`--gpus-per-trial` must be a number >= 0"):
        SweepConfig(_config(files).run, executor="ray", gpus_per_trial=-1)
    with pytest.raises(ConfigError, match="`--executor` must be one of local, ray"):
        SweepConfig(_config(files).run, executor="dask")


def test_groups_keep_one_layer_together_in_plan_order(files):
    context = prepare_context(_config(files).run)
    planned = plan_trials(context, ["all", "per-layer"])
    groups = group_trials(planned, workers=2)
    assert [item for group in groups for item in group] != planned  # regrouped ...
    assert sorted(item.key for group in groups for item in group) == sorted(item.key for item in planned)  # ... all
    assert [len(g) for g in groups] == [1] * 5 + [4] * 13  # baseline, 4 x all; 13 layers x (2 SNR x 2 seeds)
    layer_groups = groups[5:]
    assert [g[0].trial.layer_index for g in layer_groups] == [layer.index for layer in context.selected]
    order = {item.key: i for i, item in enumerate(planned)}
    for group in layer_groups:
        assert len({item.trial.layer_index for item in group}) == 1
        assert [order[item.key] for item in group] == sorted(order[item.key] for item in group)
    # fewer layers than workers: each layer's trials are cut into contiguous pieces
    one_layer = [item for item in planned if item.trial.mode == "per-layer" and item.trial.layer_index ==
                 context.selected[0].index]
    assert [len(g) for g in group_trials(one_layer, workers=3)] == [2, 2]


def test_bench_ray_script_reports_ratios_and_scaling_efficiency(cluster, files, capsys):
    spec = importlib.util.spec_from_file_location("_bench_ray", REPO / "scripts" / "bench_ray.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    model, data, _ = files
    assert bench.main([str(model), "--data", str(data), "--preprocess", "raw", "--trials", "2", "--repeats", "2",
                       "--configs", "local:1,ray:1,ray:2", "--json"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert (summary["trials"], summary["repeats"], summary["images"]) == (2, 2, IMAGES)
    configs = summary["configs"]
    local, one, two = (configs[name] for name in ("local, 1 thread", "ray, 1 worker x 1 thread",
                                                   "ray, 2 workers x 1 thread"))
    assert all(len(c["trials_per_s"]) == 2 and min(c["trials_per_s"]) > 0 for c in (local, one, two))
    assert local["ratio"] == 1.0 and local["startup_s"] is None and len(two["startup_s"]) == 2
    ratios = [b / a for a, b in zip(local["trials_per_s"], two["trials_per_s"])]
    assert two["ratio"] == pytest.approx(sum(ratios) / 2)
    efficiency = [b / (2 * a) for a, b in zip(one["trials_per_s"], two["trials_per_s"])]
    assert summary["scaling_efficiency"]["mean"] == pytest.approx(sum(efficiency) / 2)
    assert "scaling efficiency, 2 Ray workers" in out
    assert bench.main([str(model), "--data", str(data), "--configs", "ray:0"]) == 2
    assert "expected local:THREADS or ray:WORKERS, got 'ray:0'" in capsys.readouterr().err
