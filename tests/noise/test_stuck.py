"""TODO docstring."""

from __future__ import annotations
from onnxnoise.noise import make_noise_model


def test_stuck_at_caption_shows_the_stuck_on_share_as_a_percentage():
    model = make_noise_model("stuck-at", {"sa1_fraction": 1 / 11})
    assert model.describe().startswith("stuck-at faults per device, 9.09% of them stuck-on (the rest stuck-off), ")
    assert "50% of them stuck-on" in make_noise_model("stuck-at").describe()
