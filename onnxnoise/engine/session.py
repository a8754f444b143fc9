"""One ONNX Runtime session of a classifier: run a batch, on the host or bound on the GPU, tally its counters.

A session built from a staged graph (:class:`onnxnoise.engine.graph_edit.GraphEdit`: the analog
tile's input/output stages inserted) has extra graph outputs, its *counters* (clipped DAC inputs,
DAC inputs, clipped ADC outputs, ADC outputs); every run fetches them with the scores and adds
them to the session's ``tally``. A session without counters runs exactly as before they existed:
it fetches the score output alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from onnxnoise.lazy import lazy_module

ort = lazy_module("onnxruntime")

__all__ = ["Session", "DEVICE_ID"]

_CUDA = "CUDAExecutionProvider"

#: The CUDA device sessions, inputs and kept activations use (ONNX Runtime's default ``device_id``).
DEVICE_ID = 0


@dataclass(frozen=True)
class Session:
    """One ONNX Runtime inference session of a (possibly perturbed) classifier.

    Attributes:
        session: The underlying ``onnxruntime.InferenceSession``.
        input_name: Name of the image input.
        output_name: Name of the score output.
        provider: The execution provider that actually runs the model
            (``CUDAExecutionProvider`` or ``CPUExecutionProvider``).
        counters: Extra graph outputs fetched with the scores at every run, ``output name ->
            counter`` (``dac_clipped``, ``dac_values``, ``adc_clipped``, ``adc_values``); empty
            for a session without stages.
        tally: ``counter -> total`` over every run so far (each output summed over its elements,
            as int); the caller may pass its own dict to read the totals after the runs.
    """

    session: ort.InferenceSession
    input_name: str
    output_name: str
    provider: str
    keepalive: tuple = field(default=(), repr=False, compare=False)
    counters: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    tally: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch.

        Args:
            batch: Model input, e.g. ``(N, 3, H, W) float32 NCHW``.

        Returns:
            ``(N, C)`` scores as returned by the model (logits or probabilities),
            flattened to 2-D when the output has extra unit dimensions.
        """
        out = self.run_feed({self.input_name: batch})
        return out.reshape(out.shape[0], -1)

    def run_feed(self, feed: Mapping, *, bound: bool = False) -> np.ndarray:
        """The score output of one run on ``feed`` (``name -> value``), as returned; counters tallied.

        Args:
            feed: Host arrays, or with ``bound`` device ``OrtValue`` s bound through ``IOBinding``.
            bound: Bind the inputs (:meth:`run_values`): inputs already on the GPU stay there.
        """
        names = [self.output_name, *self.counters]
        if bound:
            out, *extra = self.run_values(feed, names, device="cpu")
        else:
            out, *extra = self.session.run(names, dict(feed))
        for name, value in zip(self.counters, extra):
            kind = self.counters[name]
            self.tally[kind] = self.tally.get(kind, 0) + int(np.sum(value, dtype=np.int64))
        return out

    @property
    def on_cuda(self) -> bool:
        """Whether the CUDA execution provider runs this session."""
        return self.provider == _CUDA

    def run_bound(self, batch: ort.OrtValue) -> np.ndarray:
        """Run one batch already on the device, through an ``IOBinding``.

        The input stays where it is (uploaded once by the caller, see
        :meth:`onnxnoise.engine.evaluate.EvalSet.device_batches`); weights live on the device
        since session creation, so nothing but the small score output crosses to
        the host.

        Args:
            batch: ``OrtValue`` holding the model input (e.g. on ``cuda``).

        Returns:
            ``(N, C)`` scores on the host.
        """
        out = self.run_feed({self.input_name: batch}, bound=True)
        return out.reshape(out.shape[0], -1)

    def run_values(self, feeds: Mapping[str, ort.OrtValue], outputs: Sequence[str], *,
                   device: str = "cpu") -> list:
        """Run with every input bound as an ``OrtValue`` (``IOBinding``), outputs kept where asked.

        Used on the CUDA provider, where inputs (images, kept prefix-reuse activations) already
        live on the GPU: nothing is copied to or from the host but the outputs bound to ``cpu``.

        Args:
            feeds: ``input name -> OrtValue`` (any device the provider can read).
            outputs: Names of the outputs to compute.
            device: ``cpu``: outputs copied to host numpy arrays; ``cuda``: outputs left on
                GPU :data:`DEVICE_ID` as ``OrtValue`` s (e.g. cut activations for later runs).

        Returns:
            One value per name of ``outputs``: ``np.ndarray`` (``cpu``) or ``OrtValue`` (``cuda``).
        """
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_ortvalue_input(name, value)
        for name in outputs:
            if device == "cpu":
                binding.bind_output(name, "cpu")
            else:
                binding.bind_output(name, device, DEVICE_ID)
        self.session.run_with_iobinding(binding)
        if device == "cpu":
            return list(binding.copy_outputs_to_cpu())
        return list(binding.get_outputs())
