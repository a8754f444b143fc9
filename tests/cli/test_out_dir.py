"""A bad output folder is one line and exit 2 before any model is loaded or trial run (fresh-user finding)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from onnxnoise.cli.app import main
from onnxnoise.demo import demo_paths
from onnxnoise.errors import ConfigError
from onnxnoise.files import output_folder


@pytest.fixture()
def no_loading(monkeypatch):
    """Fail the test if a command gets as far as loading a model."""
    import onnxnoise.check.job as check_job
    import onnxnoise.cli.commands as commands

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(commands, "prepare_context", refuse)
    monkeypatch.setattr(check_job, "prepare_context", refuse)  # the check's run (CheckJob) loads it
    return check_job


@pytest.mark.parametrize("command", ["bench", "check", "sweep"])
def test_out_that_is_a_file_is_one_line_before_any_work(command, tmp_path, capsys, no_loading):
    model, data = demo_paths()
    afile = tmp_path / "afile"
    afile.write_text("x")
    extra = ["--max-drop", "1"] if command == "check" else []
    code = main([command, str(model), "--data", str(data), "--snr", "10", *extra, "--out", str(afile)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err == f"onnxnoise: error: --out {afile} is a file, not a folder; give a folder path (it is created if missing)\n"


def test_out_below_a_file_and_unwritable_folders(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ConfigError, match=rf"^cannot create the output folder {afile}/sub \(Not a directory\); give a "
                                          r"writable folder with --out$"):
        output_folder(afile / "sub")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ConfigError, match="cannot write in the output folder"):
            output_folder(locked)


def test_checking_a_new_folder_leaves_nothing_behind(tmp_path):
    target = tmp_path / "a" / "b" / "c"
    assert output_folder(target) == target
    assert not (tmp_path / "a").exists()  # created by the command when it writes, not by the check
    existing = tmp_path / "kept"
    existing.mkdir()
    (existing / "old.txt").write_text("results")
    assert output_folder(existing) == existing and (existing / "old.txt").read_text() == "results"


def test_report_into_a_file_is_one_line(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["report", str(tmp_path), "--out", str(afile)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_file_system_error_during_a_command_is_one_line(tmp_path, capsys, monkeypatch):
    import onnxnoise.cli.commands as commands

    def full(args, console):
        raise OSError(28, "No space left on device", str(tmp_path / "trials.sqlite"))

    monkeypatch.setitem(commands.COMMANDS, "report", full)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == (f"onnxnoise: error: No space left on device: {tmp_path / 'trials.sqlite'} (no file was left "
                   "half-written; fix it and run the same command again)\n")  # report writes no rows
    monkeypatch.setitem(commands.COMMANDS, "sweep", full)
    assert main(["sweep", "--config", str(tmp_path / "exp.toml")]) == 2
    err = capsys.readouterr().err
    assert err == (f"onnxnoise: error: No space left on device: {tmp_path / 'trials.sqlite'} (any trial rows written "
                   "before it are kept; fix it and run the same command again)\n")


@pytest.mark.parametrize("command", ["bench", "check", "sweep"])
@pytest.mark.parametrize(("model_name", "folder"), [("...onnx", "model"), (".onnx", "model"),
                                                    ("resnet 20 (v2).onnx", "resnet-20-v2"),
                                                    ("modèle.onnx", "modèle")])
def test_default_out_folder_of_an_odd_model_file_name(command, model_name, folder, tmp_path, monkeypatch):
    """The default folder (reports/<model>-<time>, runs/<model>, reports/check-<model>-<time>) stays one folder."""
    import onnxnoise.cli.check_command as check_command
    import onnxnoise.cli.commands as commands

    seen = []

    def stop(path, **kwargs):
        seen.append(Path(path))
        raise ConfigError("stop here")

    monkeypatch.setattr(commands, "output_folder", stop)
    monkeypatch.setattr(check_command, "output_folder", stop)
    model = tmp_path / model_name
    shutil.copy(demo_paths()[0], model)
    extra = ["--max-drop", "1"] if command == "check" else []
    assert main([command, str(model), "--data", str(demo_paths()[1]), "--snr", "10", *extra]) == 2
    (path,) = seen
    parent = {"sweep": "runs"}.get(command, "reports")
    assert path.parent == Path(parent)
    stem = {"bench": f"{folder}-", "check": f"check-{folder}-"}.get(command, folder)
    assert path.name.startswith(stem) and (command == "sweep") == (path.name == folder)


def test_sweep_of_a_model_named_dots_onnx_stays_in_runs(tmp_path, monkeypatch, capsys):
    model = tmp_path / "...onnx"
    shutil.copy(demo_paths()[0], model)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code = main(["sweep", str(model), "--data", str(demo_paths()[1]), "--limit", "20", "--seeds", "1",
                 "--snr", "10", "--mode", "all", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    made = sorted(str(p.relative_to(work)) for p in work.rglob("*"))
    assert made == ["runs", "runs/model", "runs/model/trials.sqlite"]


def test_experiment_model_name_outside_out_is_one_line_before_any_folder(tmp_path, capsys):
    exp = tmp_path / "exp.toml"
    exp.write_text(f'[data]\npath = "{demo_paths()[1]}"\n[models."../../escaped"]\npath = "{demo_paths()[0]}"\n'
                   '[[sweeps]]\nsnr = [10]\n')
    assert main(["sweep", "--config", str(exp), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "[models] key '../../escaped' would not stay one folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.toml"]
