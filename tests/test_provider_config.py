"""``--provider``, ``--provider-option``, ``--provider-library``: parsing, refusals, and "off" by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from onnxnoise.config import RunConfig
from onnxnoise.errors import ConfigError
from onnxnoise.provider_config import ProviderConfig, parse_provider_options
from onnxnoise.settings import config_values, own_key_values


def test_options_from_flags_and_from_a_toml_table():
    assert parse_provider_options(["device_type=CPU", " num_of_threads = 2 ", "cache_dir=a=b"]) == {
        "device_type": "CPU", "num_of_threads": "2", "cache_dir": "a=b"}
    # TOML: numbers and booleans become the text ONNX Runtime's providers read
    assert parse_provider_options({"num_of_threads": 2, "enable_qdq_optimizer": True, "x": False}) == {
        "num_of_threads": "2", "enable_qdq_optimizer": "1", "x": "0"}
    assert parse_provider_options("device_type=GPU") == {"device_type": "GPU"}
    assert parse_provider_options(None) is None


@pytest.mark.parametrize("item", ["device_type", "=CPU", " =1"])
def test_an_option_without_key_or_equals_sign_is_refused(item):
    with pytest.raises(ConfigError) as info:
        parse_provider_options([item])
    assert str(info.value) == f"`--provider-option` {item!r} must look like KEY=VALUE, e.g. device_type=CPU"


def test_options_or_library_without_a_provider_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"^`--provider-option` needs `--provider NAME` \(the provider it is for\)$"):
        ProviderConfig(options={"a": "1"})
    lib = tmp_path / "libplugin.so"
    lib.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"^`--provider-library` needs `--provider NAME`"):
        ProviderConfig(library=lib)
    with pytest.raises(ConfigError, match="no such file; pass the plugin's shared library"):
        ProviderConfig(name="XEP", library=tmp_path / "missing.so")
    assert ProviderConfig(name="XEP", library=str(lib)).library == lib


def test_provider_and_a_device_other_than_auto_are_refused():
    with pytest.raises(ConfigError, match=r"^pass `--provider CPUExecutionProvider` or `--device cpu`, not both$"):
        RunConfig(model=Path("m.onnx"), data=Path("d"), device="cpu",
                  provider=ProviderConfig(name="CPUExecutionProvider"))


def test_off_by_default_and_built_from_option_keys():
    config = RunConfig(model=Path("m.onnx"), data=Path("d"))
    assert config.provider == ProviderConfig()
    assert config.to_dict()["provider"] == {"provider": None, "provider_options": {}, "provider_library": None}
    assert own_key_values(config) == {}  # their trial-key entries are "provider" and "provider_options"
    values = config_values(RunConfig, {"provider": "OpenVINOExecutionProvider",
                                       "provider_options": ["device_type=CPU", "num_of_threads=2"]})
    assert values["provider"] == ProviderConfig(name="OpenVINOExecutionProvider",
                                                options={"device_type": "CPU", "num_of_threads": "2"})
