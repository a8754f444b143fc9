"""none.py: no weight noise (the tile's stages alone): one strength 0, weights exact, no 'unchanged' warning."""

from __future__ import annotations

import numpy as np
import pytest

from onnxnoise.errors import NoiseConfigError
from onnxnoise.model import get_initializers, list_layers
from onnxnoise.noise import draw_noise, make_noise_model
from onnxnoise.noise_config import NoiseConfig

from tests._builders import tiny_cnn


def test_weights_stay_exact_and_nothing_is_reported_unchanged():
    model = tiny_cnn()
    weights = get_initializers(model)
    draw = draw_noise(make_noise_model("none"), 0.0, 7, list_layers(model), weights)
    assert draw.arrays.keys() == {n for layer in list_layers(model) for n in layer.tensors}
    assert all(np.array_equal(draw.arrays[n], weights[n]) for n in draw.arrays)
    assert draw.changed_values == {}  # acts on no tensor: no "the draw changed 0 values" warning


def test_its_one_strength_is_0():
    config = NoiseConfig.from_options(noise="none")
    # describe() without the model's name, which the report puts before it ("none: weights exact", once)
    assert config.strengths == (0.0,) and config.noise_model.describe().startswith("weights exact (no weight noise")
    with pytest.raises(NoiseConfigError, match=r"^noise model none has one strength, 0 \(no weight noise\), got 3"):
        NoiseConfig.from_options(noise="none", strength="3")
