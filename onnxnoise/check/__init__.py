"""``onnxnoise check``: a pass / fail gate on the accuracy drop under noise, fit for CI.

* :mod:`onnxnoise.check.bounds`: the bounds of a paired drop (images and draws as crossed
  factors, exact floors, skew correction, possible range), pure functions;
* :mod:`onnxnoise.check.sequential`: the decision rule (repeated looks), pure functions;
* :mod:`onnxnoise.check.gate`: baseline and noisy draws through the trial engine until
  the rule decides;
* :mod:`onnxnoise.check.tolerance`: the noisiest strength that still passes (bisection);
* :mod:`onnxnoise.check.protect`: layers to keep noise-free so the gate passes;
* :mod:`onnxnoise.check.request`: what one check asks beyond a gate (search, protection);
* :mod:`onnxnoise.check.outputs`: ``check.json``, ``junit.xml``, ``check.md``;
* :mod:`onnxnoise.check.job`: one whole check, from its settings to its verdict, report and files
  (what ``onnxnoise check`` and :func:`onnxnoise.check_model` both run).

The ``onnxnoise check`` command itself (options, printing, exit codes) is
``onnxnoise/cli/check_command.py``; this package never imports the CLI.
"""

from onnxnoise.check.sequential import (
    FAIL, INCONCLUSIVE, MAX_DRAWS, MIN_DRAWS, PASS, Decision, Draw, decide, decide_streams, run_sequential,
)

__all__ = ["PASS", "FAIL", "INCONCLUSIVE", "MIN_DRAWS", "MAX_DRAWS", "Draw", "Decision", "decide",
           "decide_streams", "run_sequential"]
