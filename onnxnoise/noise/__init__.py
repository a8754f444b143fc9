"""Noise models and the policies around a draw."""
