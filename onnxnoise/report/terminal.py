"""Tables that fit the terminal: no word split between lines, no line past the width, no table cut off.

rich shrinks a table that is too wide by narrowing its widest columns to equal widths, whatever their
words: at 80 columns a header is split mid-word (``collaps`` / ``ed``), a label such as ``SNR 3 (33.3%
noise)`` takes three lines while a number column keeps room to spare, and a column given a ``min_width``
pushes the table past the width, where the console cuts it off. :class:`TerminalTable` is a rich
``Table`` that chooses its column widths when it is rendered, from rich's own measurements of its cells
(:class:`rich.measure.Measurement`: the longest word and the longest line of each column):

1. the table fits at its natural widths: rich lays it out as usual;
2. every column fits at its longest word, the ``lead`` columns (those that say which row it is: model,
   settings, strength) at their longest line, so that a row's label stays on one line: each column gets
   that, then the rest of the width goes to the other columns needing the least to fit on one line, so
   that as many columns as possible show one line per row; the widths are given to rich as fixed column
   widths;
3. not even that fits: the table is stacked, as several tables of the same rows, each with the ``lead``
   columns and others that fit (as few tables as can be, the columns spread evenly over them;
   ``(continued)`` in the title of the later ones, the caption under the last), each laid out as in 2.
   When one-line labels would take more than one part more than labels wrapped between their words (or
   leave no room for another column), the labels wrap.

A column listed in ``fold`` holds identifiers that have no word to keep whole (layer names, file paths):
it counts a word of at most :data:`FOLD_WIDTH` characters, and rich folds longer ones at the column's edge
(``overflow="fold"``). Only a width below the ``lead`` columns and one other column at their longest words
(about 40 characters for the tables here) leaves rich's own shrinking to act.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable, Sequence

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Column, Table

__all__ = ["FOLD_WIDTH", "SHORT_OPS", "TerminalTable", "column_widths", "short_op"]

#: Long ONNX op types shortened in terminal tables (markdown, CSV, Parquet and JSON keep the full name).
SHORT_OPS = {"BatchNormalization": "BatchNorm", "ConvTranspose": "ConvT", "QLinearConv": "QLConv",
             "QLinearMatMul": "QLMatMul", "InstanceNormalization": "InstanceNorm",
             "LayerNormalization": "LayerNorm", "GroupNormalization": "GroupNorm"}

#: The most a ``fold`` column's identifiers count as one word, characters (longer ones fold at the edge
#: when the width leaves them no more room).
FOLD_WIDTH = 24


class TerminalTable(Table):
    """A rich ``Table`` that fits the console's width without splitting a word (module doc).

    Args:
        *args, **kwargs: As :class:`rich.table.Table`.
        lead: How many leading columns say which row it is: they get their room first and every part of
            a stacked table repeats them.
        fold: Headers of the columns whose cells are identifiers that may fold (layer names, paths).
    """

    def __init__(self, *args, lead: int = 1, fold: Iterable[str] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lead = lead
        self.fold = frozenset(fold)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for part in self.parts(console, options):
            yield from Table.__rich_console__(part, console, options)

    def parts(self, console: Console, options: ConsoleOptions) -> list[Table]:
        """The tables drawn for ``options.max_width``: this one, or copies with fixed column widths (one,
        or several when stacked); a width too narrow for even one part is left to rich (module doc)."""
        if not self.columns or self.width is not None:
            return [self]
        ranges = [self._range(console, options, c) for c in self.columns]
        width = options.max_width
        words = [[_word_sizes(console, cell) for cell in self._cells_of(c)] for c in self.columns]
        if sum(r.maximum for r in ranges) + _borders(self, len(ranges)) <= width:
            return [self]
        lead = list(range(min(self.lead, len(self.columns))))
        # a row's label on one line (lead columns but those that fold) while that leaves room for a column
        labels = [Measurement(r.maximum, r.maximum) if i in lead and self.columns[i].header not in self.fold
                  else r for i, r in enumerate(ranges)]
        one_line = _stack(labels, lead, width, lambda n: _borders(self, n))
        wrapped = _stack(ranges, lead, width, lambda n: _borders(self, n))
        if wrapped is None:
            return [self]
        if one_line is not None and len(one_line) <= len(wrapped) + 1:  # one more part for one-line labels
            ranges, groups = labels, one_line
        else:
            groups = wrapped
        parts = []
        for number, group in enumerate(groups):
            widths = column_widths([ranges[i] for i in group], len(lead), width - _borders(self, len(group)),
                                   later=[k for k, i in enumerate(group) if self.columns[i].header in self.fold],
                                   lines=lambda k, w: _heights(words[group[k]], w - self._padding_of(group[k])))
            part = copy.copy(self)
            part.columns = [dataclasses.replace(self.columns[i], _index=k, width=w - self._padding_of(i))
                            for k, (i, w) in enumerate(zip(group, widths))]
            if number:
                part.title = f"{self.title} (continued)" if self.title else None
            if number < len(groups) - 1:
                part.caption = None
            parts.append(part)
        return parts

    def _padding_of(self, index: int) -> int:
        return self._get_padding_width(index)

    def _cells_of(self, column: Column) -> list:
        """A column's header (when shown), cells and footer (when shown): one per row drawn."""
        return [*([column.header] if self.show_header else []), *column.cells,
                *([column.footer] if self.show_footer else [])]

    def _range(self, console: Console, options: ConsoleOptions, column: Column) -> Measurement:
        """``(longest word, longest line)`` of a column's cells and header (and footer), padding included."""
        cells = self._cells_of(column)
        sizes = [Measurement.get(console, options.update(no_wrap=False), cell) for cell in cells]
        longest = max((s.maximum for s in sizes), default=1)
        word = longest if column.no_wrap else max((s.minimum for s in sizes), default=1)
        if column.header in self.fold:
            head = Measurement.get(console, options, column.header).minimum if self.show_header else 1
            word = max(min(word, FOLD_WIDTH), head)
        pad = self._padding_of(column._index)
        return Measurement(word + pad, longest + pad)


def short_op(op_type: str) -> str:
    """``op_type`` as a terminal table shows it (:data:`SHORT_OPS`, e.g. ``BatchNorm``)."""
    return SHORT_OPS.get(op_type, op_type)


def _borders(table: Table, columns: int) -> int:
    """The characters a table's box takes beside its columns' cells (rich's ``Table._extra_width``)."""
    if not table.box:
        return 0
    return columns - 1 + (2 if table.show_edge else 0)


def _stack(ranges: Sequence[Measurement], lead: list[int], width: int, borders) -> list[list[int]] | None:
    """Column indices of each part: ``lead`` then others that fit ``width`` at their longest words.

    As few parts as fit, with the other columns spread evenly over them (so that each part has room to
    spare for its labels); one part when all fit. None when the lead and one other column do not fit
    (rich's shrinking then acts). ``borders(n)``: the box's characters beside ``n`` columns.
    """
    def fits(group: list[int]) -> bool:
        return sum(ranges[i].minimum for i in group) + borders(len(group)) <= width

    others = [i for i in range(len(ranges)) if i not in lead]
    if not all(fits([*lead, i]) for i in others):
        return None
    for most in range(len(others), 0, -1):  # the most columns a part takes: fewest parts, evenly filled
        groups = _packed(others, lead, most, fits)
        if groups is not None:
            parts = len(groups)
            even = _packed(others, lead, -(-len(others) // parts), fits)
            return even if even is not None and len(even) == parts else groups
    return None


def _packed(others: list[int], lead: list[int], most: int, fits) -> list[list[int]] | None:
    """``others`` in order, at most ``most`` to a part that ``fits`` with the lead; None if one does not fit."""
    groups: list[list[int]] = []
    current = list(lead)
    for i in others:
        if len(current) - len(lead) == most or not fits([*current, i]):
            groups.append(current)
            current = list(lead)
        current.append(i)
    groups.append(current)
    return groups if all(fits(g) for g in groups) else None


def column_widths(ranges: Sequence[Measurement], lead: int, room: int, later: Iterable[int] = (),
                  lines: Callable[[int, int], list[int]] | None = None) -> list[int]:
    """Widths (padding included) of columns whose ``(longest word, longest line)`` are ``ranges`` in ``room``.

    Each column gets its longest word (``room`` must hold them all); what is left goes first to the
    ``lead`` leading columns but those listed in ``later`` (identifiers that fold: a long file name does
    not take the room of the numbers), each up to its longest line, least lacking first; then, with
    ``lines(column, width)`` (the lines each row's cell takes at that width), so that the tallest cell of
    the table is as short as can be; then to the columns by what they lack to fit on one line, least
    first. E.g. ranges ``(6, 21), (5, 5), (7, 14)``, ``lead=1``, room 35: the words
    take 18, the label gets its 15 more (21), the last column the 2 left (9): ``[21, 5, 9]``.
    """
    widths = [r.minimum for r in ranges]
    left = room - sum(widths)
    first = [i for i in range(lead) if i not in set(later)]

    def lacking(i: int) -> int:
        return ranges[i].maximum - widths[i]

    def give(i: int, most: int) -> None:
        nonlocal left
        step = max(0, min(left, most, lacking(i)))
        widths[i] += step
        left -= step

    for i in sorted(first, key=lacking):
        give(i, left)
    if lines is not None:
        for i, w in enumerate(_as_tall(ranges, widths, left, lines)):
            give(i, w - widths[i])
    for i in sorted(range(len(ranges)), key=lacking):
        give(i, left)
    return widths


def _as_tall(ranges, widths: list[int], left: int, lines) -> list[int]:
    """The widths (at least ``widths``, at most the longest lines, ``left`` more in all) that make the tallest
    cell of the table the shortest, each column as narrow as that height allows."""
    def need(i: int, height: int) -> int:
        return next((w for w in range(widths[i], ranges[i].maximum + 1) if max(lines(i, w), default=1) <= height),
                    ranges[i].maximum)

    tallest = max((max(lines(i, w), default=1) for i, w in enumerate(widths)), default=1)
    best = widths
    for height in range(tallest, 0, -1):
        wanted = [need(i, height) for i in range(len(widths))]
        if sum(wanted) - sum(widths) > left or any(max(lines(i, w), default=1) > height
                                                   for i, w in enumerate(wanted)):
            break
        best = wanted
    return best


def _word_sizes(console: Console, cell) -> list[list[int]]:
    """A cell's lines as the cell lengths of their words (a string cell read as rich markup)."""
    text = console.render_str(cell).plain if isinstance(cell, str) else getattr(cell, "plain", str(cell))
    return [[cell_len(word) for word in line.split()] for line in text.splitlines() or [""]]


def _heights(cells: list[list[list[int]]], width: int) -> list[int]:
    """Lines each cell takes wrapped at ``width``: its lines' words (cell lengths) filled greedily, a word
    longer than the width folded (as rich wraps and folds them)."""
    width = max(width, 1)
    out = []
    for cell in cells:
        count = 0
        for words in cell:
            count += 1
            used = 0
            for size in words:
                if used and used + 1 + size <= width:
                    used += 1 + size
                    continue
                if used:
                    count += 1
                count += (size - 1) // width if size else 0
                used = size - width * ((size - 1) // width) if size else 0
        out.append(count)
    return out
