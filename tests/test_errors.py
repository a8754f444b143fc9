"""errors.py: an error line echoing a huge hostile value stays short and keeps its advice."""

from __future__ import annotations

import json

import numpy as np
import onnx

from onnxnoise.errors import MAX_ERROR_CHARS, error_line
from tests._builders import tiny_cnn
from tests._checks import one_line, run_cli


def test_a_short_line_is_kept_whole_and_a_long_one_keeps_its_start_and_end():
    assert error_line("model file not found: x.onnx") == "model file not found: x.onnx"
    long = "start " + "a" * 10_000_000 + " choose one of caffe, cifar"
    cut = error_line(long)
    assert len(cut) <= MAX_ERROR_CHARS + 60 and cut.startswith("start aaa")
    assert cut.endswith("choose one of caffe, cifar")
    assert f"[... {len(long) - MAX_ERROR_CHARS * 4 // 5} characters left out ...]" in cut


def test_a_10_mb_preset_name_in_a_models_metadata_is_one_short_line_exit_2(tmp_path, capsys):
    model = tiny_cnn()
    entry = model.metadata_props.add()
    entry.key, entry.value = "onnxnoise.preprocess", json.dumps({"preset": "a" * 10_000_000})
    onnx.save(model, tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", images=rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8), labels=np.arange(10) % 10)
    code, _, err = run_cli(capsys, "bench", tmp_path / "m.onnx", "--data", tmp_path / "d.npz", "--snr", "10",
                           "--seeds", "1", "--out", tmp_path / "out")
    line = one_line(err)
    assert code == 2 and len(line) < MAX_ERROR_CHARS + 100
    assert line.startswith("onnxnoise: error: unknown preprocessing preset `aaa") and line.endswith("torchvision")


def test_a_message_with_line_breaks_is_one_line():
    reason = ("download of http://m/x.tar.gz failed: HTTP 302 The HTTP server returned a redirect error that would "
              "lead to an infinite loop.\nThe last 30x error message was:\nFound; check the URL")
    assert error_line(reason) == ("download of http://m/x.tar.gz failed: HTTP 302 The HTTP server returned a redirect "
                                  "error that would lead to an infinite loop. The last 30x error message was: Found; "
                                  "check the URL")
