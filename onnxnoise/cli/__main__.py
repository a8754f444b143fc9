"""``python -m onnxnoise.cli``."""

import sys

from onnxnoise.cli import main

sys.exit(main())
