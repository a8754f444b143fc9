"""A bad output folder is one line and exit 2 before any model is loaded or trial run (fresh-user finding)."""

from __future__ import annotations

import os

import pytest

from onnxnoise.cli.app import main
from onnxnoise.cli.out_dir import output_folder
from onnxnoise.demo import demo_paths
from onnxnoise.errors import ConfigError


@pytest.fixture()
def no_loading(monkeypatch):
    """Fail the test if a command gets as far as loading a model."""
    import onnxnoise.cli.check_command as check_command
    import onnxnoise.cli.commands as commands

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(commands, "prepare_context", refuse)
    monkeypatch.setattr(check_command, "prepare_context", refuse)
    return check_command


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
    assert err == (f"onnxnoise: error: No space left on device: {tmp_path / 'trials.sqlite'} (rows already written "
                   "are kept; fix it and run the same command again)\n")
