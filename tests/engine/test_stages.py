"""The analog tile's stages in a run: calibration kept with the run, counters in the rows, keys, exact prefix reuse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from onnxnoise.config import NoiseConfig, RunConfig, TileConfig
from onnxnoise.engine.context import prepare_context
from onnxnoise.engine.plan import plan_trials
from onnxnoise.engine.stages import CALIBRATION_FILE, STAGE_COUNTERS, stage_edit
from onnxnoise.engine import trial as trial_module
from onnxnoise.engine.trial import run_trial, run_trials
from onnxnoise.errors import ConfigError

from tests._builders import conv_bn_resnet, image_classifier, labeled_npz

#: Images of the built linear model; the first CALIBRATED calibrate the DAC.
IMAGES, CALIBRATED, ROWS, CLASSES = 8, 2, 12, 4

#: Row columns that do not depend on when or how fast a trial ran.
TIMING = ("seconds", "provider")


def _linear(folder: Path) -> tuple[Path, Path, int]:
    """Flatten([N, 3, 2, 2] -> 12) -> Gemm(W [12, 4], bias) -> logits, and 8 images whose DAC clips are known.

    The first two images' pixels are at most 100 (x = 100 / 255 after ``raw``): the calibrated DAC
    range. The other six hold pixels up to 200; every pixel above 100 is clipped.

    Returns:
        ``(model path, data path, pixels above 100 in images 2..7)``.
    """
    rng = np.random.default_rng(0)
    weight = rng.normal(0, 1, (ROWS, CLASSES)).astype(np.float32)
    nodes = [helper.make_node("Flatten", ["input"], ["flat"]),
             helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc")]
    inits = [numpy_helper.from_array(weight, "fc.weight"),
             numpy_helper.from_array(np.zeros(CLASSES, np.float32), "fc.bias")]
    model = image_classifier(nodes, inits, "linear", size=2, classes=CLASSES)
    images = rng.integers(0, 101, (IMAGES, 2, 2, 3)).astype(np.uint8)
    images[0, 0, 0, 0] = 100  # the calibrated range is exactly 100 / 255
    images[CALIBRATED:] = rng.integers(0, 201, (IMAGES - CALIBRATED, 2, 2, 3))
    clipped = int((images[CALIBRATED:] > 100).sum())
    labels = np.argmax(images.transpose(0, 3, 1, 2).reshape(IMAGES, -1) / 255.0 @ weight, axis=1)
    onnx.save(model, folder / "linear.onnx")
    np.savez(folder / "linear.npz", images=images, labels=labels.astype(np.int64))
    return folder / "linear.onnx", folder / "linear.npz", clipped


def _linear_config(folder: Path, **tile) -> RunConfig:
    return RunConfig(model=folder / "linear.onnx", data=folder / "linear.npz", preset="raw", device="cpu",
                     batch_size=3, noise=NoiseConfig.from_options(noise="none", seeds="1"), tile=TileConfig(**tile))


def test_counters_in_the_trial_rows_have_the_known_values(tmp_path):
    """8-bit DAC calibrated on 2 images, 3 tiles of 4 rows, an ADC too wide to clip: counts known by hand."""
    _, _, clipped = _linear(tmp_path)
    config = _linear_config(tmp_path, dac_bits=8, adc_bits=8, adc_bound=1000.0, tile_rows=4,
                            calibration_images=CALIBRATED)
    context = prepare_context(config)
    baseline, trial = (run_trial(context, item.trial) for item in plan_trials(context, ("all",)))
    assert [baseline[c] for c in STAGE_COUNTERS] == [None] * 4  # the baseline stays the float model
    assert baseline["top1_correct"] == IMAGES  # labels are the clean predictions
    assert trial["error"] is None and (trial["mode"], trial["strength"]) == ("all", 0.0)
    assert 0 < clipped < (IMAGES - CALIBRATED) * ROWS  # the data clip some inputs, not all
    # DAC: every input value of every image (3 batches summed); ADC: 3 tiles x 4 columns per image.
    assert [trial[c] for c in STAGE_COUNTERS] == [clipped, IMAGES * ROWS, 0, 3 * IMAGES * CLASSES]
    assert trial["changed_values"] == {}  # `none` leaves every weight exact and acts on none


def test_a_fixed_dac_range_clips_the_known_inputs_with_no_calibration_run(tmp_path):
    """--dac-bound 0.5 with a fixed ADC bound: x_max = 0.5 (pixels above 127.5 clipped), nothing measured or kept."""
    _linear(tmp_path)
    images = np.load(tmp_path / "linear.npz")["images"]
    clipped = int((images / 255.0 > 0.5).sum())
    assert 0 < clipped < IMAGES * ROWS
    config = _linear_config(tmp_path, dac_bits=8, adc_bits=8, adc_bound=1000.0, tile_rows=4, dac_bound=0.5)
    context = prepare_context(config, calibration_dir=tmp_path / "run")
    assert context.stages.images == 0 and not (tmp_path / "run" / CALIBRATION_FILE).exists()
    assert {r.x_max for r in context.stages.calibration.layers.values()} == {0.5}
    fields = context.key_fields()
    assert fields["settings"]["dac_bound"] == 0.5 and fields["calibration"] == context.stages.fingerprint
    _, trial = (run_trial(context, item.trial) for item in plan_trials(context, ("all",)))
    assert [trial[c] for c in STAGE_COUNTERS] == [clipped, IMAGES * ROWS, 0, 3 * IMAGES * CLASSES]
    other = prepare_context(_linear_config(tmp_path, dac_bits=8, adc_bits=8, adc_bound=1000.0, tile_rows=4,
                                           dac_bound=0.25))
    assert other.key_fields()["calibration"] != fields["calibration"]


def test_stages_off_change_no_key_and_each_stage_on_does(tmp_path):
    _linear(tmp_path)
    off = prepare_context(_linear_config(tmp_path, calibration_images=3, adc_scope="column"))
    assert off.stages is None and "settings" not in off.key_fields() and "calibration" not in off.key_fields()
    assert plan_trials(off, ("all",))[1].key == plan_trials(prepare_context(_linear_config(tmp_path)), ("all",))[1].key
    keys = {plan_trials(off, ("all",))[1].key}
    for stage in ({"dac_bits": 8}, {"adc_bits": 8}, {"read_noise": 0.04}, {"tile_rows": 4}):
        context = prepare_context(_linear_config(tmp_path, **stage))
        fields = context.key_fields()
        assert fields["settings"] == stage
        assert ("calibration" in fields) == ("tile_rows" not in stage)  # a tile split alone needs no ranges
        keys.add(plan_trials(context, ("all",))[1].key)
    assert len(keys) == 5


def test_calibration_is_kept_in_the_run_folder_and_reused(tmp_path):
    _linear(tmp_path)
    config = _linear_config(tmp_path, dac_bits=8, adc_bits=6, calibration_images=CALIBRATED)
    first = prepare_context(config, calibration_dir=tmp_path / "run")
    stored = json.loads((tmp_path / "run" / CALIBRATION_FILE).read_text())
    (entry,) = stored.values()
    assert entry["fingerprint"] == first.stages.fingerprint == first.key_fields()["calibration"]
    assert not first.stages.reused and entry["identity"]["tile"]["adc_bits"] == 6
    again = prepare_context(config, calibration_dir=tmp_path / "run")
    assert again.stages.reused and again.key_fields() == first.key_fields()
    other = prepare_context(_linear_config(tmp_path, dac_bits=8, adc_bits=6, calibration_images=IMAGES),
                            calibration_dir=tmp_path / "run")
    assert not other.stages.reused and len(json.loads((tmp_path / "run" / CALIBRATION_FILE).read_text())) == 2
    assert other.key_fields()["calibration"] != first.key_fields()["calibration"]  # calibrated on 8 images, not 2


def test_a_damaged_calibration_file_is_one_line(tmp_path):
    _linear(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / CALIBRATION_FILE).write_text("[1, 2]")
    with pytest.raises(Exception, match="is not a calibration file; remove it"):
        prepare_context(_linear_config(tmp_path, dac_bits=8), calibration_dir=tmp_path / "run")


def test_stage_edit_is_per_trial_layers_and_seed():
    assert stage_edit(None, ("fc",), 0) is None
    assert stage_edit(object(), ("fc",), None) is None  # the clean baseline: never staged


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stages")
    model = conv_bn_resnet()
    onnx.save(model, folder / "model.onnx")
    labeled_npz(model, folder / "data.npz", n=64)
    config = RunConfig(model=folder / "model.onnx", data=folder / "data.npz", preset="raw", device="cpu",
                       batch_size=16, noise=NoiseConfig.from_options(snr="10", seeds="0,1"),
                       tile=TileConfig(dac_bits=6, adc_bits=6, read_noise=0.04, tile_rows=16, calibration_images=32))
    return prepare_context(config)


def _same(a: dict, b: dict) -> None:
    assert {k: v for k, v in a.items() if k not in TIMING} == {k: v for k, v in b.items() if k not in TIMING}


def test_read_noise_rerun_gives_identical_rows(resnet):
    planned = plan_trials(resnet, ("all",))
    run_trial(resnet, planned[0].trial)
    trial = planned[1].trial
    first, again = run_trial(resnet, trial), run_trial(resnet, trial)
    assert first["error"] is None and first["dac_values"] > 0 and first["adc_values"] > 0
    _same(first, again)


def test_per_layer_with_prefix_reuse_equals_the_full_model_with_every_stage_and_read_noise(resnet):
    """Kept cut (one trial at a time), lockstep (a group) and the full model: the same rows, counters included."""
    planned = plan_trials(resnet, ("per-layer",))
    run_trial(resnet, planned[0].trial)
    trials = [item.trial for item in planned[1:]]
    full = [run_trial(resnet, t) for t in trials]
    kept = [run_trial(resnet, t, prefix_reuse=True) for t in trials]
    lockstep = run_trials(resnet, trials, prefix_reuse=True)
    assert resnet.prefix_runner().stats.lockstep_groups >= 1
    staged = [row for row in full if row["adc_values"]]
    assert len(staged) >= 4 and any(row["adc_clipped"] for row in staged)  # conv and gemm layers are staged
    assert all(row["adc_values"] == 0 for row in full if row["layers"][0].startswith("bn"))  # digital layers not
    for a, b, c in zip(full, kept, lockstep):
        _same(a, b)
        _same(a, c)


def test_a_layer_the_rewrite_refuses_is_one_line_before_any_trial(tmp_path):
    """An Einsum weight op cannot be split into tiles: refused when the context is prepared."""
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Flatten", ["input"], ["flat"]),
             helper.make_node("Einsum", ["flat", "w"], ["logits"], equation="nk,kc->nc", name="mix")]
    model = image_classifier(nodes, [numpy_helper.from_array(rng.normal(0, 1, (12, 4)).astype(np.float32), "w")],
                             "einsum", size=2, classes=4)
    onnx.save(model, tmp_path / "linear.onnx")
    np.savez(tmp_path / "linear.npz", images=rng.integers(0, 255, (4, 2, 2, 3)).astype(np.uint8),
             labels=np.arange(4, dtype=np.int64))
    with pytest.raises(ConfigError, match="^the tile stages cannot run on the selected layers: .*Einsum"):
        prepare_context(_linear_config(tmp_path, dac_bits=8))


def test_the_runs_tile_rows_reach_the_noise_draw(tmp_path, monkeypatch):
    """--tile-rows is passed to draw_noise (TensorInfo.tile_rows: the tile-column mapping, gaussian-max per tile)."""
    _linear(tmp_path)
    seen = []
    real = trial_module.draw_noise
    monkeypatch.setattr(trial_module, "draw_noise", lambda *a, **k: seen.append(k["tile_rows"]) or real(*a, **k))
    for rows in (0, 4):
        context = prepare_context(_linear_config(tmp_path, tile_rows=rows))
        run_trial(context, plan_trials(context, ("all",))[1].trial)
    assert seen == [0, 4]
