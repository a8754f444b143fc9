"""A clean baseline that fails at run time stops bench and sweep with one line and exit 2.

ONNX Runtime raises its own exception classes while running a batch (``Fail``,
``RuntimeException``, ...; not ``RuntimeError``). The engine turns any failure into an error row; a
failed *baseline* is a deterministic failure of the model as given, so no noisy trial runs.
"""

from __future__ import annotations

import numpy as np
import onnx
import polars as pl
import pytest
from tests._builders import tiny_cnn
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from onnxnoise.cli import main
from onnxnoise.store import open_store

ORT_MESSAGE = "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running Reshape node."


@pytest.fixture()
def failing_run(tmp_path, monkeypatch):
    model_path = tmp_path / "tiny.onnx"
    onnx.save(tiny_cnn(), str(model_path))
    data_path = tmp_path / "tiny.npz"
    rng = np.random.default_rng(0)
    np.savez(data_path, images=rng.integers(0, 256, size=(20, 8, 8, 3), dtype=np.uint8),
             labels=np.arange(20, dtype=np.int64) % 10)

    def fail(*args, **kwargs):
        raise ort_state.RuntimeException(ORT_MESSAGE)

    monkeypatch.setattr("onnxnoise.engine.trial.evaluate", fail)
    return model_path, data_path


@pytest.mark.parametrize("command", ["bench", "sweep"])
def test_failed_baseline_stops_with_one_line(failing_run, tmp_path, capsys, command):
    model, data = failing_run
    out = tmp_path / "out"
    code = main([command, str(model), "--data", str(data), "--preprocess", "raw", "--device", "cpu",
                 "--snr", "10", "--seeds", "2", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("onnxnoise: error:")]
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("onnxnoise: error: the clean baseline trial failed, so no noisy trial was run: ")
    assert "RuntimeException" in lines[0] and "Reshape node" in lines[0]
    if command == "bench":
        trials = pl.read_parquet(out / "trials.parquet")
    else:
        with open_store(out / "trials.sqlite", create=False) as store:
            trials = store.to_frame()
    assert trials["mode"].to_list() == ["baseline"] and trials["error"][0] == "RuntimeException: Non-zero status code returned while running Reshape node."
