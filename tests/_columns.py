"""A toy trial column, declared from a test fixture (no other edit): ``toy_counter``.

``test_misses`` is a :data:`~onnxnoise.store.schema.COUNTER` measured from the evaluation
(images minus top-1 hits) with the console header ``misses``. Use the fixture by name after
``from tests._columns import toy_counter``; it registers the column for one test and removes it
afterwards, so other tests see the built-in table only.
"""

from __future__ import annotations

import polars as pl
import pytest

from onnxnoise.store.schema import COUNTER, Column, register_column, unregister_column

#: The toy counter: images the trial got wrong at top-1 (``images - top1_correct``).
TOY_COUNTER = Column("test_misses", COUNTER, "INTEGER", pl.Int64, "images missed at top-1 (toy counter)",
                     measure=lambda s: s["evaluation"].images - s["evaluation"].top1_correct, header="misses")


@pytest.fixture
def toy_counter():
    """:data:`TOY_COUNTER`, declared while the test runs."""
    register_column(TOY_COUNTER)
    try:
        yield TOY_COUNTER
    finally:
        unregister_column(TOY_COUNTER.name)
