# Type stub of onnxnoise/__init__.py, whose public names are loaded lazily (module __getattr__):
# type checkers and IDEs read these imports instead. tests/test_package_api.py keeps them equal to __all__.
from onnxnoise.api import BenchRun as BenchRun
from onnxnoise.api import CheckRun as CheckRun
from onnxnoise.api import CompareRun as CompareRun
from onnxnoise.api import ExperimentRun as ExperimentRun
from onnxnoise.api import LayerList as LayerList
from onnxnoise.api import NoiseModelInfo as NoiseModelInfo
from onnxnoise.api import ReportRun as ReportRun
from onnxnoise.api import SweepRun as SweepRun
from onnxnoise.api import bench_model as bench_model
from onnxnoise.api import check_model as check_model
from onnxnoise.api import compare_runs as compare_runs
from onnxnoise.api import model_layers as model_layers
from onnxnoise.api import noise_models as noise_models
from onnxnoise.api import make_report as make_report
from onnxnoise.api import sweep_experiment as sweep_experiment
from onnxnoise.api import sweep_model as sweep_model
from onnxnoise.demo import demo_paths as demo_paths
from onnxnoise.errors import BaselineError as BaselineError
from onnxnoise.errors import BaselineExpectationError as BaselineExpectationError
from onnxnoise.errors import ConfigError as ConfigError
from onnxnoise.errors import DataError as DataError
from onnxnoise.errors import ExperimentError as ExperimentError
from onnxnoise.errors import GraphError as GraphError
from onnxnoise.errors import NoiseConfigError as NoiseConfigError
from onnxnoise.errors import OnnxNoiseError as OnnxNoiseError
from onnxnoise.errors import SessionError as SessionError
from onnxnoise.errors import StoreError as StoreError

__version__: str
__all__: list[str]
