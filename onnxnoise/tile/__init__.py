"""The analog tile's input and output stages as an ONNX graph rewrite, and their calibration.

``TileSettings`` (what is on), ``calibrate`` (ranges from clean activations, a ``Calibration``
kept with the run) and ``insert_stages`` (the model with DAC, tiles, read noise and ADC around
each matrix op, and its clip counters: a ``StagedModel``). See :mod:`onnxnoise.tile.rewrite`.
"""

from onnxnoise.tile.calibrate import BINS, COLUMN_BINS, calibrate
from onnxnoise.tile.calibration import Calibration, LayerRanges
from onnxnoise.tile.rewrite import COUNTERS, StagedModel, insert_stages
from onnxnoise.tile.settings import ADC_SCOPES, CALIBRATIONS, TileSettings
from onnxnoise.tile.stages import noise_seed, step

__all__ = ["ADC_SCOPES", "BINS", "CALIBRATIONS", "COLUMN_BINS", "COUNTERS", "Calibration", "LayerRanges", "StagedModel",
           "TileSettings", "calibrate", "insert_stages", "noise_seed", "step"]
