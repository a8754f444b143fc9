#!/usr/bin/env python
"""Write the first N CIFAR-10 test images (``test_batch`` order) as an onnxnoise ``.npz`` dataset.

The parity study compares onnxnoise and aihwkit on the same images: aihwkit's script
(``aihwkit_resnet32.py``) reads the first N of ``test_batch`` directly, and onnxnoise reads this
file (``--limit`` would take a class-stratified subset instead). Raw uint8 RGB pixels and labels;
the model's own metadata preprocesses them, as for the CIFAR batch folder.

Usage (from the repository root)::

    python scripts/parity/first_images.py 1000 build/data/cifar10-test-first1000.npz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cifar10_first import DEFAULT_TEST_BATCH, write_npz  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Parse ``N OUT [--test-batch PATH]``, write the file, print its path; exit 2 with one line on bad input."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=int, help="how many of the first test images (1 to 10,000)")
    parser.add_argument("out", type=Path, help="the .npz file to write")
    parser.add_argument("--test-batch", type=Path, default=DEFAULT_TEST_BATCH, help="CIFAR-10's test_batch pickle")
    args = parser.parse_args(argv)
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        print(write_npz(args.images, args.out, args.test_batch))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
