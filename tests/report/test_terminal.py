"""Every table and panel the CLI prints, rendered at 80 and 120 columns from realistic rows.

No line is longer than the width (rendered with ``crop=False``, so a table cut off at the edge shows as
a longer line), and no word is split between lines: every word of every header, title, caption and cell
(but the cells of a ``fold`` column: layer names, paths, which may fold) is found whole in the rendered
text. :data:`RENDERED` names each function that builds a rich ``Table``, ``TerminalTable`` or ``Panel``;
:func:`test_every_table_constructor_is_rendered_here` finds those constructors in the package's source, so
a new table without a rendering test here fails.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from rich.console import Console
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table

from onnxnoise.cli.check_summary import print_summary
from onnxnoise.cli.data_command import cmd_data
from onnxnoise.data.registry import register_dataset
from onnxnoise.model import Layer
from onnxnoise.report.blame import blame_table
from onnxnoise.report.blame_view import blame_console
from onnxnoise.report.console import a_avr_table, layers_table, paired_table, summary_table, verdicts_table
from onnxnoise.report.stats import average_normalized_accuracy, summarize_trials
from onnxnoise.report.terminal import TerminalTable, _heights, column_widths
from onnxnoise.report.versus import compare_models
from tests._frames import layer_frame

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "onnxnoise"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
WIDTHS = (80, 120)

#: Realistic names: a long quantized export beside a CIFAR ResNet, long layer names, 10,000 images.
MODELS = ("efficientnet_lite0_int8_per_channel.onnx", "resnet20_cifar10.onnx")
LAYER_NAMES = {0: "/features/features.16/conv/conv.3/Conv_depthwise_folded", 1: "layer3.2.conv2",
               2: "blocks.5.0.conv_pwl.weight_quantized", 3: "fc"}
#: The noise column of ``pcm:compensation=global,mapping=channel`` (its trials are pcm's) and of a
#: Gaussian model's trials with settings of its own (SNR labels).
PCM = {c: json.dumps({"bn_variance": "clamp", "keep_zeros": False,
                      "params": {"compensation": c, "mapping": "channel"}}, sort_keys=True)
       for c in ("global", "none")}
STRENGTHS = (10.0, 5.0, 3.0)  # SNR 10 (10% noise) ... SNR 3 (33.3% noise)


def _trials() -> pl.DataFrame:
    """Two models x two noise settings x three SNRs, per-layer and whole-model draws on 10,000 images, with
    draws at chance (collapsed) and counters, so every optional column of the tables is shown."""
    frames = []
    for m, model in enumerate(MODELS):
        for n, noise in enumerate(PCM.values()):
            per_layer = {(s, i): [9140 - 37 * i - int(400 / s) - 11 * seed - 50 * n for seed in range(3)]
                         for s in STRENGTHS for i in LAYER_NAMES}
            whole = {s: [9140 - int(9000 / s) + 130 * seed - 300 * m for seed in range(3)] for s in STRENGTHS}
            whole[3.0][0] = 1000  # a draw at chance: the collapsed column
            counters = {(s, i): {"nan_count": 12, "bn_variance_changed": 3} for s in STRENGTHS for i in (0,)}
            frames.append(layer_frame(per_layer, whole=whole, clean=9140, images=10_000, model=model, gained=7,
                                      names=LAYER_NAMES, noise=noise, counters=counters))
    frame = pl.concat(frames, how="diagonal_relaxed")  # pcm's drift time read as seconds, beside SNRs
    device = pl.when(pl.col("noise") == PCM["global"]).then(pl.lit("pcm")).otherwise(pl.col("noise_model"))
    return frame.with_columns(device.alias("noise_model"), pl.lit(1234).alias("clipped_count"))


def _layers() -> list[Layer]:
    return [Layer(index=i, name=name, op_type=op, tensors=[f"{name}.w", f"{name}.b"], roles=["weight", "bias"],
                  shapes=[shape, (shape[0],)], num_params=int(np.prod(shape)) + shape[0], sigma_w=0.01234 * (i + 1))
            for i, (name, op, shape) in enumerate([
                (LAYER_NAMES[0], "Conv", (1280, 320, 1, 1)), (LAYER_NAMES[1], "BatchNormalization", (64,)),
                (LAYER_NAMES[2], "QLinearConv", (192, 1, 5, 5)), ("classifier.1", "Gemm", (1000, 1280))])]


def _data_list(tmp: Path) -> Callable[[Console], None]:
    """``onnxnoise data list`` with a registered 10,000-image set under a long path."""
    folder = tmp / "datasets" / "imagenette2-320-validation-resized-to-224-centre-crop"
    folder.mkdir(parents=True)
    np.savez(folder / "imagenette-val-10000.npz", images=np.zeros((10_000, 2, 2, 3), np.uint8),
             labels=np.arange(10_000, dtype=np.int64) % 10)
    register_dataset("imagenette-val-10k", folder / "imagenette-val-10000.npz", replace=True)
    return lambda console: cmd_data(argparse.Namespace(data_action="list", json=False), console)


def _check_panel(console: Console) -> None:
    # A copy of reports/check-resnet20/protect-snr5/check.json kept in tests/: the sdist ships tests/ without
    # reports/ (fresh22 finding 5).
    report = json.loads((FIXTURES / "check_protect_snr5.json").read_text())
    report["recheck_command"] = (f"onnxnoise check models/{MODELS[0]} --data imagenette-val-10k --max-drop 1.0 "
                                 "--noise pcm:compensation=global,mapping=channel --t 1d")
    print_summary(console, report)


def _tables(tmp: Path) -> dict[str, Callable[[Console], None]]:
    """Per function that builds a table (``module:function``), a printer of what it builds from realistic rows."""
    trials = _trials()
    summary = summarize_trials(trials)
    a_avr = average_normalized_accuracy(trials)
    verdicts = compare_models(trials)
    blame = blame_table(trials, summary)

    def each(tables) -> Callable[[Console], None]:
        return lambda console: [console.print(t, crop=False) for t in tables]

    return {
        "onnxnoise.report.console:layers_table": each([layers_table(_layers(), title=f"models/{MODELS[0]}")]),
        "onnxnoise.report.console:summary_table": each([summary_table(summary, title="whole-model and baseline "
                                                                      f"trials: {', '.join(MODELS)}")]),
        "onnxnoise.report.console:paired_table": each([paired_table(summary)]),
        "onnxnoise.report.console:a_avr_table": each([a_avr_table(a_avr)]),
        "onnxnoise.report.console:verdicts_table": each([verdicts_table(verdicts)]),
        "onnxnoise.report.blame_view:blame_console": each(blame_console(blame)),
        "onnxnoise.cli.data_command:_list": _data_list(tmp),
        "onnxnoise.cli.check_summary:print_summary": _check_panel,
    }


#: The functions whose tables are rendered here: every one that builds a table (the test below keeps it so).
RENDERED = ("onnxnoise.report.console:layers_table", "onnxnoise.report.console:summary_table",
            "onnxnoise.report.console:paired_table", "onnxnoise.report.console:a_avr_table",
            "onnxnoise.report.console:verdicts_table", "onnxnoise.report.blame_view:blame_console",
            "onnxnoise.cli.data_command:_list", "onnxnoise.cli.check_summary:print_summary")


def _constructors() -> set[str]:
    """``module:function`` of every call to ``Table(...)``, ``TerminalTable(...)`` or ``Panel(...)`` in the package."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                for call in ast.walk(node):
                    if isinstance(call, ast.Call) and getattr(call.func, "id", None) in ("Table", "TerminalTable",
                                                                                         "Panel"):
                        found.add(f"{module}:{node.name}")
    return found


def test_every_table_constructor_is_rendered_here(printers):
    assert _constructors() == set(RENDERED) == set(printers)


_BOX = str.maketrans({c: " " for c in "│┃┏┓┗┛┡┩┢┪┣┫┠┨┯┷┿╇╈╋┳┻━─┼├┤┬┴┌┐└┘╭╮╰╯═║"})


def _render(printer: Callable[[Console], None], width: int) -> str:
    console = Console(file=io.StringIO(), record=True, width=width, color_system=None)
    printer(console)
    return console.export_text()


def _words(renderable) -> set[str]:
    """Every word a table (or panel) holds: title, caption, headers, footers, and cells of columns that do not fold."""
    console = Console(file=io.StringIO(), width=10_000, color_system=None)
    texts = []
    if isinstance(renderable, Panel):
        texts.append(str(renderable.renderable))
    else:
        fold = getattr(renderable, "fold", frozenset())
        texts += [renderable.title or "", renderable.caption or ""]
        for column in renderable.columns:
            texts += [column.header, column.footer or ""]
            if column.header not in fold:
                texts += list(column.cells)
    words = set()
    for text in texts:
        plain = console.render_str(text).plain if isinstance(text, str) else text.plain
        words.update(plain.split())
    return words


@pytest.fixture(scope="module")
def printers(tmp_path_factory) -> dict[str, Callable[[Console], None]]:
    return _tables(tmp_path_factory.mktemp("tables"))


def _captured(printer: Callable[[Console], None]) -> list:
    """The renderables a printer prints (tables, panels; strings are left out)."""
    shown = []

    class _Catch(Console):
        def print(self, *objects, **kwargs) -> None:
            shown.extend(o for o in objects if isinstance(o, (Table, Panel)))

    printer(_Catch(file=io.StringIO()))
    return shown


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", RENDERED)
def test_table_fits_the_width_without_splitting_a_word(printers, name, width):
    shown = _captured(printers[name])
    assert shown
    for renderable in shown:
        text = _render(lambda console: console.print(renderable, crop=False), width)
        assert max(len(line) for line in text.splitlines()) <= width, "\n" + text
        missing = _words(renderable) - set(text.translate(_BOX).split())
        assert not missing, f"split or lost at {width} columns: {sorted(missing)}\n{text}"


def test_check_re_check_commands_are_whole_lines_under_the_panel(printers):
    text = _render(printers["onnxnoise.cli.check_summary:print_summary"], 80)
    commands = [line for line in text.splitlines() if line.startswith("re-check")]
    assert [c.split(":")[0] for c in commands] == ["re-check the plan", "re-check"]
    assert commands[1] == (f"re-check: onnxnoise check models/{MODELS[0]} --data imagenette-val-10k --max-drop 1.0 "
                           "--noise pcm:compensation=global,mapping=channel --t 1d")
    assert "and 14 more (None)" not in text and "and 14 more;" in " ".join(text.split())


def _common_tables() -> dict[str, object]:
    """The tables of the common case: one noise model (SNRs); one model, but two for the comparison."""
    trials = _trials().filter(pl.col("noise_model") == "gaussian-snr")
    one = trials.filter(pl.col("model") == MODELS[1])
    summary = summarize_trials(one)
    return {"summary_table": summary_table(summary), "paired_table": paired_table(summary),
            "a_avr_table": a_avr_table(average_normalized_accuracy(trials)),
            "verdicts_table": verdicts_table(compare_models(trials))}


@pytest.mark.parametrize("width", WIDTHS)
def test_strength_labels_stay_on_one_line(width):
    """``SNR 3 (33.3% noise)`` whole on one line of each table that labels rows by strength (not three lines)."""
    for name, table in _common_tables().items():
        text = _render(lambda console: console.print(table), width)
        assert max(len(line) for line in text.splitlines()) <= width
        for label in ("SNR 10 (10% noise)", "SNR 5 (20% noise)", "SNR 3 (33.3% noise)"):
            assert label in text, f"{name} at {width}:\n{text}"


def test_a_table_too_wide_for_80_columns_is_stacked_with_its_lead_columns_repeated(printers):
    table = _captured(printers["onnxnoise.report.console:summary_table"])[0]
    headers = [c.header for c in table.columns]
    assert headers[:3] == ["model", "noise model", "strength"] and table.lead == 3
    console = Console(file=io.StringIO(), width=80)
    parts = table.parts(console, console.options)
    assert len(parts) > 1
    shown = [[c.header for c in part.columns] for part in parts]
    assert all(part[:3] == headers[:3] for part in shown)  # each part says which row it is
    assert [h for part in shown for h in part[3:]] == headers[3:]  # every other column once, in order
    assert [part.title.endswith("(continued)") for part in parts] == [False] + [True] * (len(parts) - 1)
    wide = Console(file=io.StringIO(), width=400)
    assert table.parts(wide, wide.options) == [table]


def test_column_widths_give_words_first_then_the_lead_then_the_least_wanting():
    m = Measurement
    # words 6 + 5 + 7 = 18 of 35: the label gets its 15 more (21), the last column the 2 left (9)
    assert column_widths([m(6, 21), m(5, 5), m(7, 14)], 1, 35) == [21, 5, 9]
    # no lead: the column that needs 2 to fit on one line gets them before the one that needs 7
    assert column_widths([m(5, 12), m(5, 7)], 0, 14) == [7, 7]
    # a lead column that folds (a file name) gets room after the numbers, not before
    assert column_widths([m(24, 43), m(10, 17)], 1, 41, later=[0]) == [24, 17]
    assert column_widths([m(24, 43), m(10, 17)], 1, 41) == [31, 10]


def test_column_widths_make_the_tallest_cell_short_rather_than_one_column_one_line():
    """Two interval columns ``69.67 [0.00, 100.00]`` (words of 5, 6 and 7; no padding) in 26 characters: one
    on one line and the other on three, or both on two lines (each row is as tall as its tallest cell)."""
    cell = [[[5, 6, 7]]]  # one row, one line of three words

    def lines(i: int, width: int) -> list[int]:
        return _heights(cell, width)

    assert _heights(cell, 20) == [1] and _heights(cell, 12) == [2] and _heights(cell, 7) == [3]
    ranges = [Measurement(7, 20), Measurement(7, 20)]
    greedy = column_widths(ranges, 0, 26)
    assert greedy == [19, 7] and [lines(0, w)[0] for w in greedy] == [2, 3]
    even = column_widths(ranges, 0, 26, lines=lines)
    assert even == [14, 12] and [lines(0, w)[0] for w in even] == [2, 2]


def test_a_terminal_table_at_its_natural_width_is_rich_s_own():
    table = TerminalTable(title="t")
    table.add_column("a")
    table.add_column("b")
    table.add_row("one two", "three")
    plain = Table(title="t")
    plain.add_column("a")
    plain.add_column("b")
    plain.add_row("one two", "three")
    assert _render(lambda c: c.print(table), 80) == _render(lambda c: c.print(plain), 80)
