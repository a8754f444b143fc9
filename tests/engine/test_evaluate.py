"""engine/evaluate.py: the one place labels meet scores.

A score output whose first axis is not the batch (``[1, N, C]``, ``[C, N]``) gives fewer score rows
than the batch has images: one line naming the cause and ``--score-output``, never a bare shape error.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from onnxnoise.data import resolve_data_config
from onnxnoise.engine.evaluate import EvalSet
from onnxnoise.errors import DataError

from tests._checks import one_line, run_cli
from tests._colour import colour_model, colour_npz

NOT_BATCH_FIRST = ("its first axis is not the batch (e.g. [1, N, C] or [C, N]); choose an output shaped [N, C] with "
                   "--score-output NAME, or export the model with the batch first")


def test_scores_with_fewer_rows_than_images_are_refused_naming_the_cause():
    config = resolve_data_config("raw", resize=None, crop=None)
    data = EvalSet(np.zeros((6, 8, 8, 3), np.uint8), np.arange(6) % 3, config)
    labels = np.arange(6) % 3
    assert data.count(np.eye(3)[labels], labels).top1_correct == 6  # [N, C]: every image right
    for scores in (np.zeros((1, 6, 3)), np.zeros((3, 6))):  # [1, N, C] and [C, N]
        with pytest.raises(DataError) as info:
            data.count(scores, labels)
        assert str(info.value) == f"the score output gave {scores.shape[0]} score row(s) for a batch of 6 images: " \
                                  + NOT_BATCH_FIRST


def test_a_score_output_with_the_batch_second_is_one_line_exit_2(tmp_path, capsys):
    model = colour_model()
    model.graph.initializer.append(numpy_helper.from_array(np.array([0], np.int64), "axis0"))
    model.graph.node.append(helper.make_node("Unsqueeze", ["logits", "axis0"], ["scores"], name="add_axis"))
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, [1, "N", 12]))
    onnx.save(model, str(tmp_path / "m.onnx"))
    code, _, err = run_cli(capsys, "bench", tmp_path / "m.onnx", "--data", colour_npz(tmp_path / "d.npz"),
                           "--preprocess", "raw", "--snr", "10", "--seeds", "1", "--device", "cpu",
                           "--out", tmp_path / "o")
    assert code == 2
    assert "the score output gave 1 score row(s) for a batch of 60 images: " + NOT_BATCH_FIRST in one_line(err)
