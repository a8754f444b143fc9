"""noise/mapping.py: the full-scale weight per tensor, output channel and tile column, and the device models on it.

Built tensors whose maxima are known by hand; pcm's per-channel relative error against the
programming-noise formula (NOISE-MODELS.md sec. 4) under both mappings; refusals in one line.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from onnxnoise.errors import NoiseConfigError
from onnxnoise.noise import draw_noise, make_noise_model
from onnxnoise.noise.mapping import full_scale, input_axes
from onnxnoise.noise.pcm import G_MAX_REF, PROG_COEFF, summed_response

from tests._noise_inputs import make_layer, tensor_info


def _info(w, op_type="Conv", axes=(0,), tile_rows=0, name="w"):
    layer = make_layer("l", (name,), (w.shape,), ("weight",), op_type=op_type, axes=axes)
    info = tensor_info(name, layer, w, layers=(layer,))
    return layer, info.__class__(**{**info.__dict__, "tile_rows": tile_rows})


def test_full_scale_of_a_conv_weight_per_tensor_channel_and_tile_column():
    # [C_out=2, C_in=3, 2, 2]: input channel i of output o holds values o*10 + i (+0..0.3 over the kernel)
    w = np.array([[[[o * 10 + i + k / 10 for k in range(2)] for _ in range(2)] for i in range(3)] for o in range(2)])
    _, info = _info(w, tile_rows=9)  # a tile holds floor(9 / 4) = 2 input channels: tiles {0, 1} and {2}
    assert full_scale(w, info, "tensor") == pytest.approx(12.1)
    np.testing.assert_array_equal(full_scale(w, info, "channel").ravel(), [2.1, 12.1])
    tiles = full_scale(w, info, "tile-column")
    assert tiles.shape == w.shape
    np.testing.assert_array_equal(tiles[:, :, 0, 0], [[1.1, 1.1, 2.1], [11.1, 11.1, 12.1]])
    assert np.all(tiles == tiles[:, :, :1, :1])  # one value per (column, tile) over the kernel
    _, small = _info(w, tile_rows=3)  # fewer rows than one kernel: one input channel per tile
    np.testing.assert_array_equal(full_scale(w, small, "tile-column")[:, :, 0, 0], [[0.1, 1.1, 2.1],
                                                                                    [10.1, 11.1, 12.1]])


def test_full_scale_of_a_gemm_weight_cuts_tiles_along_k():
    w = -np.arange(10.0).reshape(5, 2)  # [K=5, N=2], output axis 1 (transB=0)
    _, info = _info(w, op_type="Gemm", axes=(1,), tile_rows=2)
    np.testing.assert_array_equal(full_scale(w, info, "channel"), [[8.0, 9.0]])
    np.testing.assert_array_equal(full_scale(w, info, "tile-column"), [[2, 3], [2, 3], [6, 7], [6, 7], [8, 9]])
    assert input_axes((5, 2), "Gemm", 1) == (0, ())
    assert input_axes((2, 5), "Gemm", 0) == (1, ())
    assert input_axes((8, 4, 3, 3), "ConvTranspose", 1) == (0, (2, 3))


def test_tile_column_without_tile_rows_and_unknown_axes_are_refused_in_one_line():
    w = np.ones((4, 3))
    _, info = _info(w, op_type="Gemm", axes=(1,))
    with pytest.raises(NoiseConfigError, match=r"set --tile-rows R") as exc:
        full_scale(w, info, "tile-column")
    assert "\n" not in str(exc.value)
    _, blind = _info(w, op_type="Gemm", axes=())  # a Gemm without its layer's axes: transB unknown
    with pytest.raises(NoiseConfigError, match=r"mapping=channel needs the output-channel axis of tensor 'w'"):
        full_scale(w, blind, "channel")


def test_check_layers_refuses_a_channel_mapping_of_a_tensor_without_a_channel_axis():
    layer = make_layer("fc", ("fc.w", "fc.b"), ((3, 4), (4,)), ("weight", "bias"), op_type="Gemm", axes=(1, None))
    make_noise_model("pcm", {"mapping": "channel"}).check_layers([layer])  # the bias is digital
    with pytest.raises(NoiseConfigError, match=r"^pcm: mapping=channel needs the output-channel axis of tensor "
                                               r"'fc.b' \(layer 'fc', Gemm\).*mapping=tensor") as exc:
        make_noise_model("pcm", {"mapping": "channel", "analog": "all"}).check_layers([layer])
    assert "\n" not in str(exc.value)
    with pytest.raises(NoiseConfigError, match="`mapping` must be one of tensor, channel, tile-column"):
        make_noise_model("stuck-at", {"mapping": "row"})


def test_mapping_tensor_is_the_default_and_stays_out_of_the_parameters():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 4, 3, 3)).astype(np.float32)
    layer = make_layer("conv", ("conv.w",), (w.shape,), ("weight",), axes=(0,))
    for name in ("pcm", "stuck-at", "conductance-levels", "crosssim"):
        default, explicit = make_noise_model(name), make_noise_model(name, {"mapping": "tensor"})
        assert "mapping" not in default.params() and default.params() == explicit.params()
        strength = 16.0 if name == "conductance-levels" else 0.05
        a = draw_noise(default, strength, 3, [layer], {"conv.w": w}).arrays["conv.w"]
        b = draw_noise(explicit, strength, 3, [layer], {"conv.w": w}).arrays["conv.w"]
        assert a.tobytes() == b.tobytes()
    assert make_noise_model("pcm", {"mapping": "channel"}).params()["mapping"] == "channel"


def test_conductance_levels_per_channel_gives_each_channel_its_own_grid():
    w = np.array([[1.0, 0.5, 0.26], [0.01, 0.005, 0.0026]], dtype=np.float32)  # Gemm transB=1: [N, K], axis 0
    layer = make_layer("fc", ("fc.w",), (w.shape,), ("weight",), op_type="Gemm", axes=(0,))
    per_tensor = draw_noise(make_noise_model("conductance-levels"), 3, 0, [layer], {"fc.w": w},
                            model_layers=[layer]).arrays["fc.w"]
    per_channel = draw_noise(make_noise_model("conductance-levels", {"mapping": "channel"}), 3, 0, [layer],
                             {"fc.w": w}, model_layers=[layer]).arrays["fc.w"]
    np.testing.assert_allclose(per_tensor, [[1.0, 0.5, 0.5], [0.0, 0.0, 0.0]], atol=1e-9)
    np.testing.assert_allclose(per_channel, [[1.0, 0.5, 0.5], [0.01, 0.005, 0.005]], rtol=1e-6)


def test_a_channel_of_zeros_reads_back_zero_under_channel_mapping():
    w = np.zeros((3, 50), dtype=np.float32)
    w[0] = np.linspace(-1, 1, 50)
    layer = make_layer("fc", ("fc.w",), (w.shape,), ("weight",), op_type="Gemm", axes=(0,))
    for name, strength in (("pcm", 3600.0), ("crosssim", 0.1), ("stuck-at", 0.3)):
        out = draw_noise(make_noise_model(name, {"mapping": "channel"}), strength, 1, [layer],
                         {"fc.w": w}, model_layers=[layer]).arrays["fc.w"]
        assert np.all(out[1:] == 0.0) and np.any(out[0] != w[0]), name


def _programming_rms(a: float, g_max: float = 25.0) -> float:
    """RMS of ``(g+ - g-) - a`` in uS after programming noise only: active device at target ``a``, idle one at 0.

    Both devices clipped at 0 (NOISE-MODELS.md sec. 4): for ``Y = max(a + s Z, 0) - a``,
    ``E[max(a + sZ, 0)] = a Phi(a/s) + s phi(a/s)`` and ``E[max(a + sZ, 0)^2] = (a^2 + s^2) Phi(a/s) + a s phi(a/s)``.
    """
    def moments(target: float) -> tuple[float, float]:
        x = target / g_max
        s = max(PROG_COEFF[0] + PROG_COEFF[1] * x + PROG_COEFF[2] * x * x, 0.0) * g_max / G_MAX_REF
        r = target / s
        m1 = target * stats.norm.cdf(r) + s * stats.norm.pdf(r)
        m2 = (target ** 2 + s ** 2) * stats.norm.cdf(r) + target * s * stats.norm.pdf(r)
        return m1 - target, m2 - 2 * target * m1 + target ** 2
    ea, ea2 = moments(a)
    ei, ei2 = moments(0.0)
    return float(np.sqrt(ea2 + ei2 - 2 * ea * ei))


def test_pcm_channel_mapping_equalizes_the_relative_error_of_channels_100x_apart():
    """Programming noise only; two output channels of |w| = 1 and 0.01 (random signs), 40,000 weights each."""
    rng = np.random.default_rng(11)
    base = rng.choice([-1.0, 1.0], size=(1, 10_000, 2, 2))
    w = np.concatenate([base, 0.01 * rng.choice([-1.0, 1.0], size=base.shape)]).astype(np.float32)
    layer = make_layer("conv", ("conv.w",), (w.shape,), ("weight",), axes=(0,))
    params = {"drift": False, "read_noise": False}

    def relative_rms(mapping):
        out = draw_noise(make_noise_model("pcm", {**params, "mapping": mapping}), 0.0, 5, [layer],
                         {"conv.w": w}, model_layers=[layer]).arrays["conv.w"].astype(np.float64)
        err = out - w
        return [float(np.sqrt(np.mean(err[c] ** 2)) / np.abs(w[c]).max()) for c in range(2)]

    large, small = relative_rms("channel")
    expected = _programming_rms(25.0) / 25.0  # both channels at x = 1 of their own range
    assert large == pytest.approx(expected, rel=0.03) and small == pytest.approx(expected, rel=0.03)
    large_t, small_t = relative_rms("tensor")
    assert large_t == pytest.approx(expected, rel=0.03)
    predicted = _programming_rms(0.25) / 0.25  # the small channel at x = 0.01 of the tensor's range
    assert small_t == pytest.approx(predicted, rel=0.03)
    # 27 x: 100 x from its 1 % share of the range, times 0.27, the noise at x = 0.01 relative to x = 1
    assert small_t / large_t == pytest.approx(27.4, rel=0.05)


def test_pcm_global_compensation_under_tile_column_mapping_keeps_the_summed_response():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(1000, 6)).astype(np.float32)  # MatMul B [K=1000, N=6], tiles of 256 rows: 4 per column
    layer = make_layer("mm", ("mm.w",), (w.shape,), ("weight",), op_type="MatMul", axes=(1,))
    model = make_noise_model("pcm", {"mapping": "tile-column", "compensation": "global", "programming": False,
                                     "read_noise": False})
    out = draw_noise(model, 86400.0, 0, [layer], {"mm.w": w}, model_layers=[layer], tile_rows=256).arrays["mm.w"]
    assert np.any(out != w)
    assert summed_response(out, 1) == pytest.approx(summed_response(w, 1), rel=1e-5)
    with pytest.raises(NoiseConfigError, match="set --tile-rows"):
        draw_noise(model, 86400.0, 0, [layer], {"mm.w": w}, model_layers=[layer])
    with pytest.raises(NoiseConfigError, match="`tile_rows` must be a non-negative integer"):
        draw_noise(model, 86400.0, 0, [layer], {"mm.w": w}, tile_rows=-1)
