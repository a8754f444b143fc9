"""Presets of the anchors' analog settings: one name that expands to ordinary onnxnoise settings.

``--analog-preset NAME`` (bench, sweep, check; ``analog_preset`` in a sweep of an experiment
file) stands for a noise spec (``--noise``), values of run settings (the tile stages' ``--dac-bits``,
``--tile-rows``...) and default strengths. The expansion is done where a run's options are
resolved (:meth:`onnxnoise.config.RunConfig.expand_options`): every setting the user gives
explicitly wins over the preset's, and ``--noise`` of the preset's model merges its parameters
into the preset's (``--analog-preset aihwkit-pcm --noise pcm:levels=16`` keeps
``compensation=global,mapping=tile-column``); ``--noise`` of another model replaces the preset's noise
and its strengths. ``onnxnoise noise-models --presets`` prints every expansion with its sources;
the run's facts name the preset and its expansion.

Each preset cites its source for every parameter, with its unit (:attr:`Preset.cites`). The
table is data: the setting keys are checked against :class:`onnxnoise.config.RunConfig` where
the expansion is applied (a key this build lacks is refused in one line) and by the tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from onnxnoise.errors import ConfigError

__all__ = ["Preset", "PresetExpansion", "PRESETS", "expand_preset"]


@dataclass(frozen=True)
class PresetExpansion:
    """What a preset stands for, as ordinary settings.

    Attributes:
        name: The preset's name.
        noise: The ``--noise`` spec, ``MODEL[:key=value,...]``.
        settings: Run setting key (:func:`onnxnoise.settings.declared` of ``RunConfig``; the flag
            without dashes, ``-`` as ``_``) -> value, as an experiment file gives it.
        strengths: The strengths as ``--strength`` takes them (``60s,1h,1d``), or ``None`` for the
            noise model's own default grid.
    """

    name: str
    noise: str
    settings: Mapping[str, Any]
    strengths: str | None

    def flags(self) -> list[str]:
        """The expansion as command-line words: ``--noise ... --dac-bits 8 ... --strength ...``."""
        words = ["--noise", self.noise]
        for key, value in self.settings.items():
            words += [f"--{key.replace('_', '-')}", str(value)]
        return words + (["--strength", self.strengths] if self.strengths else [])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``name``, ``noise``, ``settings``, ``strengths``, ``flags``."""
        return {"name": self.name, "noise": self.noise, "settings": dict(self.settings), "strengths": self.strengths,
                "flags": " ".join(self.flags())}


@dataclass(frozen=True)
class Preset:
    """One anchor's setting, with its source.

    Attributes:
        name: ``--analog-preset`` value.
        summary: One line: what it models.
        source: Where the setting is published (repository, file, paper; ../shared/PARITY.md section).
        noise, settings, strengths: As :class:`PresetExpansion`.
        cites: Parameter (a noise parameter, a setting key or ``strengths``) -> its value with unit and
            source, and where onnxnoise's reading differs from the anchor's.
    """

    name: str
    summary: str
    source: str
    noise: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    strengths: str | None = None
    cites: Mapping[str, str] = field(default_factory=dict)

    def expansion(self) -> PresetExpansion:
        """The preset as ordinary settings."""
        return PresetExpansion(self.name, self.noise, dict(self.settings), self.strengths)


_AIHWKIT = ("IBM aihwkit 1.2.0: StandardHWATrainingPreset (src/aihwkit/simulator/presets/inference.py) with "
            "PCMLikeNoiseModel() defaults (src/aihwkit/inference/noise/pcm.py) and GlobalDriftCompensation; times of "
            "notebooks/tutorial/hw_aware_training.ipynb; ../shared/PARITY.md sec. 1")
_PCM_CITES = {
    "pcm": "PCMLikeNoiseModel(): prog_coeff (0.26348, 1.9650, -1.1731) uS at g_max 25 uS (SinglePairConductanceConverter "
           "default, g_min 0), t_0 20 s, t_read 250 ns, drift mu/sigma clips 0.049-0.1 / 0.008-0.045, Q_s "
           "0.0088 / max(x^0.65, 1e-3) clipped at 0.2, prog/read/drift scales 1: onnxnoise's pcm defaults are the "
           "same formulas and constants (NOISE-MODELS.md sec. 4). Differences: aihwkit's preset also draws weight "
           "read noise per forward (w_noise 0.0175, PCM_READ) and IR drop (ir_drop 1.0), not modelled here",
    "compensation": "global: GlobalDriftCompensation (one scalar per layer from the summed absolute response to "
                    "all-ones inputs; aihwkit computes it per analog tile)",
    "mapping": "tile-column: WeightRemapType.CHANNELWISE_SYMMETRIC (each output column scaled to the full "
               "conductance range), done by each analog tile of <= 512 inputs on its own (TileModuleArray splits the "
               "flattened C_in*kh*kw rows into ceil(rows / 512) equal parts), so a layer of more rows (ResNet-32's "
               "64-channel 3x3 convs: 576, two tiles of 288) has one full scale per column of each tile; onnxnoise "
               "cuts tiles by the same rule (onnxnoise.model.tiles)",
    "strengths": "60 s, 1 h, 1 d, 30 d, 360 d (31,104,000 s): the notebook's inference times, t_inf after programming",
}
_IO_CITES = {
    "dac_bits": "8 bits: forward.inp_res = 254 levels (2^8 - 2, symmetric around 0); learned input ranges in "
                "aihwkit (init 3.0), calibrated from clean activations here (--calibration)",
    "adc_bits": "8 bits: forward.out_res = 254 levels",
    "read_noise": "0.04 x_max * w_max: forward.out_noise (std of additive output noise per read, relative to the "
                  "output range)",
    "adc_bound": "10 x_max * w_max: forward.out_bound (output clipping)",
    "tile_rows": "512 rows: mapping.max_input_size (the fewest tiles of <= 512 rows, rows spread evenly, as "
                 "aihwkit's TileModuleArray; onnxnoise keeps each kernel whole, the same cut for power-of-two "
                 "channel counts)",
    "adc_scope": "column: out_bound and out_noise are in units of the normalized weights, and the channel-wise "
                 "remap normalizes each column to its own max, so in weight units the bound and the output noise "
                 "are per column (10 and 0.04 x x_max x that column's w_max); measured on the first 1,000 test "
                 "images, ResNet32, aihwkit-pcm-untrained at 60 s: 67.4% with one range per tile, 75.2% per "
                 "column, aihwkit itself 81.2% (reports/parity/README.md)",
}

_CROSSSIM = ("Sandia CrossSim 3.2.0 (sandialabs/cross-sim 0a2eb1e): Inference manual v2.0 and "
             "tutorial/ISCA2024/isca24_codesign.ipynb; ../shared/PARITY.md sec. 2")


def _crosssim(error: str, sigma: str) -> Preset:
    return Preset(
        name=f"crosssim-{error}", summary=f"CrossSim state-{error} programming error, sigma = {sigma}, with the ISCA "
        "2024 tutorial's 8-bit calibrated DAC and ADC on 576-row arrays", source=_CROSSSIM,
        noise=f"crosssim:error={error}",
        settings={"dac_bits": 8, "adc_bits": 8, "tile_rows": 576, "calibration": "max", "calibration_images": 500},
        strengths="0.01,0.02,0.05,0.1,0.2,0.3",
        cites={"crosssim": f"sigma = {sigma}, clipped to [Gmin, Gmax], balanced (differential) pairs; "
                           "Gmin / Gmax = 0.2225 (Rmin 4.45 kOhm / Rmax 20 kOhm, ISCA 2024 tutorial). The tutorial "
                           "also quantizes weights to 8 bits (add levels=N to --noise for a grid); no drift, no read "
                           "noise, no parasitics",
               "error": f"{error}: sigma = {sigma}",
               "mapping": "tensor (default): one weight range per layer, as CrossSim scales each layer's matrix",
               "dac_bits": "8 bits: the tutorial's 8-bit DAC",
               "adc_bits": "8 bits: the tutorial's 8-bit sign-magnitude ADC (onnxnoise's ADC is symmetric)",
               "tile_rows": "576 rows: arrays of 576 x 256",
               "calibration": "max: ranges from clean activations with quantization off (CrossSim ships per-layer "
                              "calibrated input and ADC limits)",
               "calibration_images": "500 images: CrossSim calibrates on 500 CIFAR-10 training images; onnxnoise on "
                                     "the first 500 evaluation images",
               "strengths": "alpha 0.01 to 0.3 (fraction of Gmax or of G); the tutorial's MNIST example uses 0.3"})


#: Every preset by name (``--analog-preset``), each with its source and per-parameter citations.
PRESETS: dict[str, Preset] = {preset.name: preset for preset in (
    Preset(name="aihwkit-pcm", summary="aihwkit's PCM inference setting: programming noise, drift and 1/f read noise "
           "with global drift compensation, each tile's columns mapped to the full range, 8-bit DAC and ADC, output "
           "noise, 512-input tiles", source=_AIHWKIT, noise="pcm:compensation=global,mapping=tile-column",
           settings={"dac_bits": 8, "adc_bits": 8, "read_noise": 0.04, "adc_bound": 10.0, "tile_rows": 512,
                     "adc_scope": "column"},
           strengths="60s,1h,1d,30d,360d", cites={**_PCM_CITES, **_IO_CITES}),
    Preset(name="aihwkit-pcm-untrained", summary="aihwkit-pcm on a model converted without analog training: "
           "every tile's input range left at its initial +-3.0 (inputs clipped there; read noise and output bound "
           "scale with it)", source=_AIHWKIT, noise="pcm:compensation=global,mapping=tile-column",
           settings={"dac_bits": 8, "adc_bits": 8, "read_noise": 0.04, "adc_bound": 10.0, "tile_rows": 512,
                     "adc_scope": "column", "dac_bound": 3.0},
           strengths="60s,1h,1d,30d,360d",
           cites={**_PCM_CITES, **_IO_CITES,
                  "dac_bits": "8 bits: forward.inp_res = 254 levels (2^8 - 2, symmetric around 0) over the fixed "
                              "input range +-3.0 (dac_bound)",
                  "dac_bound": "3.0 input units: forward.inp_range learned input ranges left at init_value 3.0 (no "
                               "analog training): aihwkit's own behaviour on a model converted without training "
                               "(reports/parity/README.md: the [-3, 3] input clamp confirmed inside aihwkit)"}),
    Preset(name="aihwkit-pcm-weights", summary="the aihwkit-pcm weight side with a perfect forward pass "
           "(forward.is_perfect = True): no DAC, ADC or output noise; the same 512-input tiles, each mapping its "
           "own columns, read exactly", source=_AIHWKIT, noise="pcm:compensation=global,mapping=tile-column",
           settings={"tile_rows": 512}, strengths="60s,1h,1d,30d,360d",
           cites={**_PCM_CITES, "tile_rows": _IO_CITES["tile_rows"]}),
    Preset(name="afm", summary="Analog Foundation Models weight noise: sigma = 0.05 max|W_row| per output row",
           source="IBM Analog Foundation Models (2025), apply_noise_model.py; aihwkit-lightning ADD_NORMAL_PER_CHANNEL; "
           "../shared/PARITY.md sec. 3", noise="gaussian-max:scope=row", strengths="0.05",
           cites={"gaussian-max": "w' = w + z * gamma * max|W_row|", "scope": "row: one max per output row",
                  "strengths": "gamma 0.05: AFM's sigma = 0.05 max|W_row|"}),
    Preset(name="afm-tile", summary="Analog Foundation Models weight noise per row of each 512-input tile",
           source="IBM Analog Foundation Models (2025), apply_noise_model.py (tile variant); ../shared/PARITY.md sec. 3",
           noise="gaussian-max:scope=tile", settings={"tile_rows": 512}, strengths="0.05",
           cites={"gaussian-max": "w' = w + z * gamma * max|W_row,tile|", "scope": "tile: one max per output row of "
                  "each tile", "tile_rows": "512 input rows per tile (also splits the forward pass into 512-row "
                  "tiles, summed digitally; exact without the other stages)",
                  "strengths": "gamma 0.05"}),
    _crosssim("independent", "alpha * Gmax"),
    _crosssim("proportional", "alpha * G"),
    Preset(name="noisynn", summary="NoisyNN's one SNR in dB for every non-BatchNorm weight of the model",
           source="Shao, Liew & Gunduz, NoisyNN, arXiv 2105.10699; ../shared/NOISE-MODELS.md sec. 2, PARITY.md sec. 3",
           noise="gaussian-global-db",
           cites={"gaussian-global-db": "SNR_dB = 10 log10(mean(w^2) / sigma^2) over all non-BatchNorm weights, one "
                                        "sigma", "strengths": "the model's grid, 40, 30, 20, 10 dB"}),
    Preset(name="paper", summary="the seed paper's additive Gaussian noise, sigma = std(w_layer) / SNR per layer",
           source="Fagbohungbe & Qian, arXiv 2011.11840, eq. 1; ../shared/NOISE-MODELS.md sec. 1",
           noise="gaussian-snr",
           cites={"gaussian-snr": "sigma = std(w) / SNR per tensor (a layer's weight), SNR a linear ratio",
                  "strengths": "the model's grid, SNR 100, 50, 20, 10 (noise 1, 2, 5, 10 % of sigma_w, Table III)"}),
)}


def expand_preset(name: str) -> PresetExpansion:
    """The settings preset ``name`` stands for.

    Raises:
        ConfigError: An unknown name (one line listing the presets).
    """
    preset = PRESETS.get(name)
    if preset is None:
        raise ConfigError(f"unknown --analog-preset {name!r}; choose from {', '.join(PRESETS)} "
                          "(`onnxnoise noise-models --presets` lists them)")
    return preset.expansion()
