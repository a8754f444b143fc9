"""Settings declared once (onnxnoise.settings): a setting added in one place reaches every place that lists them.

The ``toy_setting`` fixture registers a run setting the package does not know (``--toy-gain``)
and the tests find it, with no other edit, in ``bench`` / ``sweep`` / ``check --help``, in an
experiment file (accepted and validated), in ``check``'s re-check command line and in the run's
recorded config (``bench.json`` and the trial store's ``runs.config``). Other tests check the
derived tables against the declarations: the parsers, the experiment-file keys, the docs.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from pathlib import Path

import pytest

from onnxnoise.check.gate import GateSettings
from onnxnoise.check.request import CheckRequest
from onnxnoise.cli.app import main
from onnxnoise.cli.check_command import recheck_command
from onnxnoise.cli.options_doc import options_markdown
from onnxnoise.cli.parser import CHECK_SETTINGS, build_parser
from onnxnoise.config import PREPROCESS_SETTINGS, RunConfig, SweepConfig
from onnxnoise.data import PREPROCESS_KEYS
from onnxnoise.engine.context import prepare_context
from onnxnoise.engine.plan import Trial
from onnxnoise.errors import ConfigError, ExperimentError
from onnxnoise.experiment import load_experiment
from onnxnoise.noise import NOISE_MODELS, get_noise_model
from onnxnoise.settings import RUNTIME, Setting, declared, register_setting, unregister_setting
from onnxnoise.store import open_store

from tests._checks import help_words

ROOT = Path(__file__).resolve().parents[1]


def _positive_gain(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"`--toy-gain` must be a number > 0, got {value!r}")
    return float(value)


#: A setting the package does not declare: a float with a default, validated, in files and on every run command.
TOY = Setting(key="toy_gain", flag="--toy-gain", type=float, metavar="G", parse=_positive_gain, group=RUNTIME,
              files=("sweeps",), unit="x", help="a toy gain that changes nothing (default {default})", default=1.5)


@pytest.fixture()
def toy_setting():
    """Register :data:`TOY` for one test (and remove it after)."""
    setting = register_setting(TOY)
    yield setting
    unregister_setting(setting.key)



@pytest.mark.parametrize("command", ["bench", "sweep", "check"])
def test_toy_setting_is_in_the_help(toy_setting, capsys, command):
    assert "--toy-gain G a toy gain that changes nothing (default 1.5)" in help_words(capsys, command)


def test_toy_setting_in_run_config_and_its_recorded_dict(toy_setting):
    base = {"model": Path("m.onnx"), "data": Path("d.npz")}
    assert RunConfig(**base).extra == {"toy_gain": 1.5} and RunConfig(**base).to_dict()["toy_gain"] == 1.5
    assert RunConfig(**base, extra={"toy_gain": 4}).to_dict()["toy_gain"] == 4.0
    with pytest.raises(ConfigError, match=r"`--toy-gain` must be a number > 0, got -1"):
        RunConfig(**base, extra={"toy_gain": -1})
    with pytest.raises(ConfigError, match="unknown setting.s. nope; registered: toy_gain"):
        RunConfig(**base, extra={"nope": 1})


def test_unregistered_setting_is_gone(tmp_path):
    assert "toy_gain" not in RunConfig(model=Path("m.onnx"), data=Path("d.npz")).to_dict()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "m.onnx", "--toy-gain", "2"])
    path = _study(tmp_path, Path("m.onnx"), Path("d.npz"), "toy_gain = 2.5")
    with pytest.raises(ExperimentError, match=r"unknown key\(s\) toy_gain in \[\[sweeps\]\] #1"):
        load_experiment(path)


def _study(tmp_path: Path, model: Path, data: Path, sweep_line: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(f'out = "runs"\n[data]\npath = "{data}"\npreprocess = "raw"\n\n[models.m]\npath = "{model}"\n\n'
                    f'[[sweeps]]\nsnr = [10]\nseeds = 1\ndevice = "cpu"\n{sweep_line}\n')
    return path


def test_toy_setting_in_experiment_files(toy_setting, tmp_path):
    path = _study(tmp_path, Path("m.onnx"), Path("d.npz"), "toy_gain = 2.5")
    (_, sweep), = load_experiment(path).sweeps
    assert sweep.run.extra == {"toy_gain": 2.5}
    path.write_text(path.read_text().replace("toy_gain = 2.5", "toy_gain = -2"))
    with pytest.raises(ExperimentError, match=r"#1: `toy_gain` must be a number > 0, got -2$"):
        load_experiment(path)
    path.write_text(path.read_text().replace("toy_gain = -2", ""))
    assert load_experiment(path).sweeps[0][1].run.extra == {"toy_gain": 1.5}


def test_toy_setting_in_the_recheck_command(toy_setting):
    args = build_parser().parse_args(["check", "m.onnx", "--data", "d.npz", "--snr", "10", "--max-drop", "1",
                                      "--toy-gain", "2.5"])
    text = recheck_command(args, 10.0, get_noise_model("gaussian-snr")())
    assert "--toy-gain 2.5" in text
    assert build_parser().parse_args(shlex.split(text)[1:]).toy_gain == 2.5


def test_toy_setting_in_bench_json_and_the_store(toy_setting, resnet_npz, tmp_path, capsys):
    model, data = resnet_npz
    common = ["--data", str(data), "--preprocess", "raw", "--device", "cpu", "--snr", "10", "--seeds", "1"]
    assert main(["bench", str(model), *common, "--toy-gain", "3", "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "bench.json").read_text())["config"]["toy_gain"] == 3.0
    assert main(["bench", str(model), *common, "--toy-gain", "0", "--out", str(tmp_path / "c")]) == 2
    assert capsys.readouterr().err == "onnxnoise: error: `--toy-gain` must be a number > 0, got 0.0\n"
    path = _study(tmp_path, model, data, "toy_gain = 2.5")
    assert main(["sweep", "--config", str(path)]) == 0
    with open_store(tmp_path / "runs" / "m" / "trials.sqlite", create=False) as store:
        config = json.loads(store.runs()["config"][0])
    assert config["toy_gain"] == 2.5 and config["noise"]["strengths"] == [10.0]


def test_parsers_take_exactly_the_declared_settings():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - the test looks, the code does not
    own = {"bench": {"--out", "--json", "--config"}, "sweep": {"--out", "--config"},
           "check": {"--out", "--json", "--config"}}
    classes = {"bench": (RunConfig,), "sweep": (SweepConfig,), "check": CHECK_SETTINGS}
    for command, sub in ((c, commands[c]) for c in own):
        flags = {o for a in sub._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
        declared_flags = {s.flag for cls in classes[command] for s in declared(cls, command) if s.flag}
        assert flags == declared_flags | own[command], command


def test_experiment_keys_are_the_declared_file_keys():
    keys = {s.key for s in declared(SweepConfig) if "sweeps" in s.files}
    assert {"batch_size", "prefix_memory", "tf32", "seeds", "snr", "t", "noise", "limit", "modes"} <= keys
    assert not keys & {"executor", "workers", "cache", "force_preprocess"}  # command line only


def test_docs_options_page_is_generated_from_the_declarations(monkeypatch):
    for name, cls in list(NOISE_MODELS.items()):  # the page lists the package's models, not other tests' ones
        if not cls.__module__.startswith("onnxnoise."):
            monkeypatch.delitem(NOISE_MODELS, name)
    assert (ROOT / "docs" / "options.md").read_text() == options_markdown(), \
        "docs/options.md is stale: python -m onnxnoise.cli.options_doc > docs/options.md"


def _option_tables(text: str):
    """``(header cells, row cells)`` of each markdown table whose rows start with a `--flag`."""
    header = None
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]] if line.startswith("|") else None
        if cells is None:
            header = None
        elif header is None:
            header = [c.lower() for c in cells]
        elif cells[0].startswith("`--"):
            yield header, cells


def _by_flag(classes) -> dict:
    return {s.flag: s for cls in classes for s in declared(cls) if s.flag}


def test_option_tables_in_the_docs_agree_with_the_declarations():
    parser = build_parser()
    subs = parser._subparsers._group_actions[0].choices  # noqa: SLF001
    flags = {o for sub in subs.values() for a in sub._actions for o in a.option_strings}
    run_flags = _by_flag((SweepConfig,))
    check_flags = {**run_flags, **_by_flag(CHECK_SETTINGS[1:])}  # check's --max-seeds is the gate's
    checked = 0
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        if doc.name == "options.md":
            continue  # generated: compared whole above
        by_flag = check_flags if doc.name == "check.md" else run_flags
        for header, cells in _option_tables(doc.read_text()):
            named = re.findall(r"`(--[a-z0-9-]+)", cells[0])
            assert set(named) <= flags, f"{doc.name}: {cells[0]} names an option no command has"
            if "default" in header and len(named) == 1 and named[0] in by_flag:
                shown = cells[header.index("default")].strip("`") or "-"
                assert shown == (by_flag[named[0]].default_text() or "-"), f"{doc.name}: {named[0]} default {shown}"
                checked += 1
    assert checked >= 6  # the gate's table in docs/check.md


def test_preprocessing_flags_are_the_data_configs_overridable_keys():
    assert sorted(s.key for s in PREPROCESS_SETTINGS) == sorted(PREPROCESS_KEYS)


def test_flags_a_command_only_refuses_are_not_in_its_help(capsys):
    """check chooses its own number of draws: --seeds / --ci-halfwidth are refused there, so its help leaves them out."""
    check, bench = help_words(capsys, "check"), help_words(capsys, "bench")
    assert "--seeds SEEDS" not in check and "--ci-halfwidth" not in check and "--max-seeds N" in check
    assert "--seeds SEEDS noise draws per strength" in bench and "--ci-halfwidth POINTS" in bench
    assert main(["check", "m.onnx", "--snr", "10", "--max-drop", "1", "--seeds", "5"]) == 2
    assert "check chooses its number of draws itself; drop --seeds and use --max-seeds N" in capsys.readouterr().err


def test_every_keyed_setting_names_an_entry_the_trial_key_has(resnet_npz):
    """A setting declared ``trial_key="entry"`` relies on that entry of the key: it must exist (in the run's
    ``key_fields`` or the trial's fields), or the setting would change counts without changing keys."""
    model, data = resnet_npz
    context = prepare_context(RunConfig(model=model, data=data, preset="raw", device="cpu"))
    entries = set(context.key_fields()) | {f.name for f in dataclasses.fields(Trial)}
    named = {s.key: s.trial_key for cls in (SweepConfig, GateSettings, CheckRequest) for s in declared(cls)
             if isinstance(s.trial_key, str)}
    assert named and {key: entry for key, entry in named.items() if entry not in entries} == {}
