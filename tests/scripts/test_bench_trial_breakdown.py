"""scripts/bench_trial_breakdown.py: one run on a built model, every step timed and summed per round."""

from __future__ import annotations

import json

import onnx
import pytest

from tests._builders import labeled_npz, tiny_cnn


@pytest.fixture(scope="module")
def breakdown(load_script):
    return load_script("bench_trial_breakdown")


def test_rounds_split_each_trial_into_its_steps(breakdown, tmp_path, capsys):
    model = tiny_cnn()
    path = tmp_path / "tiny.onnx"
    onnx.save(model, path)
    labeled = labeled_npz(model, tmp_path / "data.npz", n=40)
    assert breakdown.main([str(path), "--data", str(labeled.path), "--preprocess", "raw", "--limit", "0",
                           "--repeats", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["images"] == len(labeled.labels)
    for side in ("clean", "noisy"):
        rounds = out["rounds"][side]
        assert all(len(rounds[step]) == 3 for step in breakdown.STEPS)
        for r in range(3):  # the trial is its three steps, back to back
            parts = rounds["draw"][r] + rounds["build"][r] + rounds["infer"][r]
            assert rounds["trial"][r] == pytest.approx(parts, rel=1e-9, abs=1e-9)
    assert len(out["noisy_over_clean"]) == 2 and out["noisy_over_clean"][0] > 0
