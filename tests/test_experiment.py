"""experiment.py: experiment-file messages name keys in the file's own syntax."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from onnxnoise.errors import ExperimentError
from onnxnoise.config import RunConfig
from onnxnoise.experiment import load_experiment, load_settings_file
from tests._checks import one_line, run_cli


def test_experiment_file_messages_use_the_file_syntax(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(f'[data]\npath = "{tmp_path / "d.npz"}"\n[models.m]\npath = "{tmp_path / "m.onnx"}"\n'
                    '[[sweeps]]\nnoise = "pcm"\nt = ["1s", "soon"]\n')
    with pytest.raises(ExperimentError) as info:
        load_experiment(path)
    assert str(info.value) == (f"{path}: [[sweeps]] #1: `t` value 'soon' is not a number; give a list of numbers, "
                               "e.g. [100, 10, 5]")
    path.write_text(path.read_text().replace('t = ["1s", "soon"]', 't = ["-1d"]'))
    with pytest.raises(ExperimentError, match=re.escape('times must be >= 0 (e.g. ["0s", "1s", "1h", "1d", "30d", '
                                                        '"1y"])')):
        load_experiment(path)


def _experiment(tmp_path, model_key: str = "m", top: str = "") -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(f'{top}[data]\npath = "{tmp_path / "d.npz"}"\n'
                    f'[models.{model_key}]\npath = "{tmp_path / "m.onnx"}"\n[[sweeps]]\nsnr = [10]\n')
    return path


@pytest.mark.parametrize("key", ['"../../../x"', '"/tmp/abs"', '"a/b"', '"a\\\\b"', '".."', '".hidden"'])
def test_model_names_that_would_leave_the_out_folder_are_refused(tmp_path, key):
    path = _experiment(tmp_path, key)
    with pytest.raises(ExperimentError) as info:
        load_experiment(path)
    assert re.fullmatch(rf"{re.escape(str(path))}: \[models\] key '.*' would not stay one folder inside the output "
                        r"folder; use letters, digits, `_`, `\.` or `-` \(no path separators, not starting with "
                        r"`\.` or `-`\)", str(info.value))


def test_study_name_is_refused_only_where_it_names_the_folder(tmp_path):
    path = _experiment(tmp_path, top='name = "../../../x"\n')
    with pytest.raises(ExperimentError, match=r"`name` '\.\./\.\./\.\./x' would not stay one folder .*; or give "
                                              r'`out = "FOLDER"`$'):
        load_experiment(path)
    path = _experiment(tmp_path, top=f'name = "../../../x"\nout = "{tmp_path / "runs"}"\n')
    experiment = load_experiment(path)  # a title only: the folder is `out`
    assert experiment.out == tmp_path / "runs" and experiment.run_dir("m") == tmp_path / "runs" / "m"
    plain = load_experiment(_experiment(tmp_path, "resnet20", top='name = "my study"\n'))
    assert plain.out == tmp_path / "runs" / "my study" and plain.run_dir("resnet20").parent == plain.out


@pytest.mark.parametrize(("file_name", "name"), [
    ("...toml", "experiment"),  # was refused: "`name` '..' would not stay one folder", a name the user never set
    ("..toml", "experiment"), (".hidden.toml", "hidden"), ("-x.toml", "x"), ("my study.toml", "my study"),
    ("exp.toml", "exp"),
])
def test_a_file_without_name_takes_a_plain_folder_name_from_its_file_name(tmp_path, file_name, name):
    path = _experiment(tmp_path).rename(tmp_path / file_name)
    experiment = load_experiment(path)
    assert experiment.name == name and experiment.out == tmp_path / "runs" / name


def test_a_deeply_nested_experiment_file_is_one_line_exit_2(tmp_path, capsys):
    path = tmp_path / "deep.toml"
    path.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    with pytest.raises(ExperimentError, match=r"deep.toml is not valid TOML: the TOML text nests arrays or objects "
                       "more than 64 levels deep$"):
        load_experiment(path)
    code, _, err = run_cli(capsys, "sweep", "--config", path)
    assert code == 2 and one_line(err).endswith("is not valid TOML: the TOML text nests arrays or objects more than "
                                                "64 levels deep")


def test_a_byte_order_mark_is_read_and_invalid_utf_8_names_its_line(tmp_path, capsys):
    path = _experiment(tmp_path, top='name = "study"\n')
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # Windows Notepad's UTF-8
    assert load_experiment(path).out == tmp_path / "runs" / "study"
    path.write_bytes(b'# caf\xe9 (Latin-1)\n' + path.read_bytes()[3:])
    message = (f"{path} is not valid TOML: line 1 holds byte 0xe9, which is not UTF-8 (TOML files are UTF-8: save it "
               "as UTF-8)")
    with pytest.raises(ExperimentError, match=f"^{re.escape(message)}$"):
        load_experiment(path)
    path.write_bytes(path.read_bytes().replace(b"\xe9", b"e").replace(b'"study"', b'"st\xffudy"'))
    code, _, err = run_cli(capsys, "sweep", "--config", path)
    assert code == 2 and one_line(err).endswith("line 2 holds byte 0xff, which is not UTF-8 (TOML files are UTF-8: "
                                                "save it as UTF-8)")


def test_a_sweeps_analog_preset_expands_and_its_own_keys_win(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(f'[data]\npath = "{tmp_path / "d.npz"}"\n[models.a]\npath = "{tmp_path / "a.onnx"}"\n'
                    f'[models.b]\npath = "{tmp_path / "b.onnx"}"\n'
                    '[[sweeps]]\nanalog_preset = "aihwkit-pcm-weights"\n'
                    '[[sweeps]]\nanalog_preset = "afm"\nnoise = "gaussian-max:analog=all"\ngamma = [0.02]\n')
    sweeps = load_experiment(path).sweeps
    pcm = [config.run.noise for name, config in sweeps if config.run.analog_preset == "aihwkit-pcm-weights"]
    assert len(pcm) == 2 and all(n.model == "pcm" and n.params["mapping"] == "tile-column" for n in pcm)
    tiles = [config.run.tile.tile_rows for name, config in sweeps if config.run.analog_preset == "aihwkit-pcm-weights"]
    assert tiles == [512, 512]
    assert pcm[0].strengths == (60.0, 3600.0, 86400.0, 2592000.0, 31104000.0)
    afm = [config.run.noise for name, config in sweeps if config.run.analog_preset == "afm"]
    assert afm[0].params == {"analog": "all", "scope": "row"} and afm[0].strengths == (0.02,)


def test_settings_file_values_parse_as_the_flags_do(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"")
    path = tmp_path / "s.toml"
    path.write_text('model = "m.onnx"\ndata = "cifar10"\nsnr = [100, 10]\nmean = [0.5, 0.25]\nlimit = "100"\n'
                    'keep_zeros = true\nout = "o"\n')
    values = load_settings_file(path, "bench", RunConfig)
    assert values["model"] == tmp_path / "m.onnx" and values["out"] == tmp_path / "o"
    assert values["data"] == Path("cifar10")  # no such file beside it: a registered dataset name
    assert values["snr"] == (100, 10) and values["mean"] == (0.5, 0.25) and values["limit"] == 100
    assert values["keep_zeros"] is True and values["seeds"] is None


def test_settings_file_refuses_a_table(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("[data]\npath = 'x'\n")
    with pytest.raises(ExperimentError, match="data is a table; bench --config takes one value per key"):
        load_settings_file(path, "bench", RunConfig)
