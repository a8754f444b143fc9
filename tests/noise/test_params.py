"""noise/params.py and the registry: every model registered and round-tripped, bad parameters and strengths one line."""

from __future__ import annotations

import math

import pytest

from onnxnoise.errors import NoiseConfigError
from onnxnoise.noise import NOISE_MODELS, get_noise_model, make_noise_model
from onnxnoise.noise.pcm import format_seconds


def test_models_registered_and_round_trip():
    for name in ("gaussian-snr", "gaussian-global-db", "multiplicative", "pcm", "stuck-at", "conductance-levels"):
        cls = get_noise_model(name)
        model = make_noise_model(name)
        assert make_noise_model(name, model.params()) == model
        assert cls.__doc__ and model.default_strengths and model.describe()
        for value in model.default_strengths:
            model.check_strength(value)
    assert NOISE_MODELS["bit-flip"].__name__ == "BitFlip"  # needs TensorInfo.stored and .dequantize
    pcm = make_noise_model("pcm", {"compensation": "global", "g_max": 25})
    assert pcm.params()["g_max"] == 25.0 and isinstance(pcm.params()["g_max"], float)
    assert pcm.format_strength(86400.0) == "t = 1 d" and pcm.format_strength(None) == "clean"
    assert [format_seconds(s) for s in (1, 3600, 2592000, 31536000, 0, 0.5)] == \
        ["1 s", "1 h", "30 d", "1 y", "0 s", "0.5 s"]


@pytest.mark.parametrize(("name", "params", "message"), [
    ("gaussian-snr", {"scope": "global"}, "`scope` must be one of tensor, layer, channel, got 'global'; "
                                          "whole-model noise (NoisyNN, SNR in dB over mean squares) is the model "
                                          "gaussian-global-db"),
    ("gaussian-snr", {"scope": "row"}, "`scope` must be one of tensor, layer, channel, got 'row'"),
    ("pcm", {"g_max": 0}, "`g_max` must be a finite number > 0 (uS), got 0"),
    ("pcm", {"compensation": "local"}, "`compensation` must be one of none, global, got 'local'"),
    ("pcm", {"programming": "false"}, "`programming` must be true or false, got 'false'"),
    ("pcm", {"read_noise": 1}, "`read_noise` must be true or false, got 1"),
    ("pcm", {"levels": 1}, "`levels` must be an integer >= 2 (0 = continuous, no quantization), got 1"),
    ("pcm", {"analog": "bias"}, "`analog` must be one of weights, all, got 'bias'"),
    ("stuck-at", {"sa1_fraction": 1.5}, "`sa1_fraction` must be a number in [0, 1], got 1.5"),
    ("stuck-at", {"levels": 3.5}, "`levels` must be an integer >= 2 (0 = continuous, no quantization), got 3.5"),
    ("conductance-levels", {"analog": 3}, "`analog` must be one of weights, all, got 3"),
])
def test_bad_parameter_is_one_clear_line(name, params, message):
    with pytest.raises(NoiseConfigError) as info:
        make_noise_model(name, params)
    assert str(info.value) == f"noise model {name!r}: {message}"
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("pcm", -1.0, "pcm `t_inf` must be a finite number >= 0, got -1.0"),
    ("stuck-at", 1.5, "stuck-at fault rate `p` must be in [0, 1] (a fraction of devices), got 1.5"),
    ("conductance-levels", 2.5, "conductance `levels` must be an integer >= 2, got 2.5"),
    ("gaussian-global-db", math.inf, "SNR in dB must be a finite number, got inf"),
    ("multiplicative", -0.1, "multiplicative `eta` must be a finite number >= 0, got -0.1"),
])
def test_bad_strength_is_one_clear_line(name, value, message):
    with pytest.raises(NoiseConfigError) as info:
        make_noise_model(name).check_strength(value)
    assert str(info.value) == message
