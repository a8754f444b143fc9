"""Trial store schema v2: every column declared once (:class:`Column`), versions, the SQL.

A trial store is one SQLite file (normally ``RUN_DIR/trials.sqlite``) marked with
``PRAGMA application_id`` = :data:`APPLICATION_ID` and ``PRAGMA user_version`` =
:data:`SCHEMA_VERSION`. It holds three tables: ``trials`` (one row per finished trial,
columns :data:`TRIAL_COLUMNS`), ``runs`` (one row per sweep invocation, columns
:data:`RUN_COLUMNS`) and ``meta`` (``name -> value`` text pairs: ``schema_version``,
``created_at``, ``created_by`` and, after a migration, ``migrated_from`` and
``migrated_at``).

Each trial column is one :class:`Column` of :data:`TRIAL_COLUMNS`: name, role (:data:`ROLES`),
SQLite type, Polars dtype, a one-line description and, for a measured column, where a finished
trial's value comes from. Everything else derives from that table: the ``CREATE TABLE`` SQL
(:func:`create_sql`), the Polars schema of ``TrialStore.to_frame()`` and of bench's table
(:func:`trial_frame`), the columns added to an older file on open
(:func:`onnxnoise.store.migrate.add_missing_columns`), a trial row's measured values
(:func:`measured_values`, :func:`onnxnoise.engine.trial.run_trial`) and the counters that bench
and the reports sum (:func:`column_names` of role :data:`COUNTER`). A new column is one entry here,
or :func:`register_column` from a plug-in or a test fixture.

Version history:

* 1: ``snr`` (``inf`` for the baseline), noise settings as
  ``{"noise_model", "bn_variance", "keep_zeros"}``.
* 2: ``strength`` (the noise model's strength, NULL for the baseline) and
  ``noise_model`` (registry name) replace ``snr``; ``noise`` is
  ``{"params": {...}, "bn_variance", "keep_zeros"}``; new columns ``key_version``,
  ``layers_noised``, ``label_offset``, ``batch_size``, ``overflow_count``,
  ``clipped_count``, ``zeros_kept``, ``context`` (trials) and ``context`` (runs).
  :mod:`onnxnoise.store.migrate` converts a version 1 file in place.
* 2, additive: nullable columns declared later (the paired counts of role :data:`PAIRED`:
  ``flips``, ``lost_top1``, ``gained_top1``, ``lost_top5``, ``gained_top5``), added to an
  older version 2 file with ``ALTER TABLE`` when it is opened: any declared column the file
  lacks is added (its rows keep NULL there). Later: ``changed_values`` (role :data:`CHANGED`). The version stays 2: keys are unchanged, and an
  onnxnoise without these columns still reads and writes the file (naming its columns, it
  ignores the new ones).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from onnxnoise import __version__
from onnxnoise.config import SWEEP_MODES
from onnxnoise.lazy import lazy_module

pl = lazy_module("polars")

__all__ = [
    "SCHEMA_VERSION", "APPLICATION_ID", "KEY_VERSION", "SPLIT_KEY_VERSION", "STORE_NAME", "MODES",
    "IDENTITY", "SETTING", "TRIAL", "COUNT", "COUNTER", "CHANGED", "PAIRED", "TIMING", "OUTCOME", "ROLES", "MEASURED_ROLES",
    "SOURCES", "Column", "TRIAL_COLUMNS", "RUN_COLUMNS", "columns", "column_names", "json_columns", "measured_values",
    "register_column", "unregister_column", "create_sql", "create_schema", "canonical_json", "trial_frame", "now",
]

#: Schema version, kept in ``PRAGMA user_version`` and in the ``meta`` table.
SCHEMA_VERSION: int = 2

#: ``PRAGMA application_id`` marking a file as an onnxnoise trial store ("onnx").
APPLICATION_ID: int = 0x6F6E6E78

#: Version of the trial key derivation (:func:`onnxnoise.engine.plan.trial_key` hashes it):
#: the ``key_version`` of rows keyed by the current engine (the default of ``record``); rows
#: migrated from a version 1 store have ``key_version`` 1 until adopted. Bump it only with a
#: migration that keeps existing stores resumable.
KEY_VERSION: int = 2

#: Key version of a trial whose draw splits a tensor into chunks (:data:`onnxnoise.noise.rng.SPLIT_MIN_ELEMENTS`
#: or more elements under a ``split_draw`` model: other values than the one stream of version 2). Every other
#: trial keeps :data:`KEY_VERSION`, so stores of models without such a tensor stay valid as they are. 4: chunks
#: by :func:`onnxnoise.noise.rng.box_muller_fill`; 3 (the ziggurat's values, other draws) is not reused.
SPLIT_KEY_VERSION: int = 4

#: File name of the trial store inside a run folder.
STORE_NAME: str = "trials.sqlite"

#: Trial modes the store accepts in ``mode``: the clean baseline and the sweep modes.
MODES: tuple[str, ...] = ("baseline", *SWEEP_MODES)

# Column roles: what a column says about a trial.
IDENTITY = "identity"  # which stored row: its key and run
SETTING = "setting"  # the run's model, data and settings (the trial key's context)
TRIAL = "trial"  # what the trial noised: mode, layers, strength, seed
COUNT = "count"  # evaluation counts the accuracy comes from
COUNTER = "counter"  # things counted per trial, summed over seeds by bench and the reports
CHANGED = "changed"  # what the draw changed in each noised layer (JSON), read for no-op warnings
PAIRED = "paired"  # counts against the clean model on the same images (McNemar's discordant pairs)
TIMING = "timing"  # how long and when
OUTCOME = "outcome"  # the error of a failed trial

#: Every role, in table order.
ROLES: tuple[str, ...] = (IDENTITY, SETTING, TRIAL, COUNT, COUNTER, CHANGED, PAIRED, TIMING, OUTCOME)

#: Roles of the columns a finished trial measures (:func:`measured_values`; null in a failed trial's row).
MEASURED_ROLES: tuple[str, ...] = (COUNT, COUNTER, CHANGED, PAIRED)

#: Where a measured column's value is read, by the column's name: ``evaluation`` (an attribute of
#: :class:`onnxnoise.engine.evaluate.Outcomes`), ``draw`` (of :class:`onnxnoise.noise.NoiseDraw`),
#: ``paired`` (a key of :func:`onnxnoise.engine.evaluate.paired_counts`; 0 for the baseline), ``stages``
#: (a key of the counters the analog tile's stages added up, :attr:`onnxnoise.engine.session.Session.tally`;
#: ``None``, so NULL columns, for a trial without stages).
SOURCES: tuple[str, ...] = ("evaluation", "draw", "paired", "stages")


@dataclass(frozen=True)
class Column:
    """One column of a store table, declared once.

    Attributes:
        name: Column name, an SQL identifier (letters, digits, ``_``).
        role: One of :data:`ROLES`.
        sql: SQLite type and constraints, e.g. ``"INTEGER"``, ``"TEXT NOT NULL"``.
        dtype: Polars dtype in ``TrialStore.to_frame()`` (``pl.Int64``, ``pl.Float64``, ``pl.String``), or
            its name in ``polars`` (``"Int64"``): the built-in columns give names, so importing the
            schema does not import Polars (:mod:`onnxnoise.lazy`); read it as :attr:`polars_dtype`.
        doc: One-line description, with the unit.
        json: The column holds sorted-key JSON text (``record`` also takes a JSON-ready object).
        source: For a measured column (:data:`MEASURED_ROLES`): one of :data:`SOURCES`, read by name.
        measure: For a measured column, instead of ``source``: computes the value from
            ``{"evaluation": Outcomes, "draw": NoiseDraw, "paired": {name: int}, "stages": {name: int} | None}``.
        header: Short header in the summary tables: a :data:`COUNTER` with one is shown where
            it is non-zero, a :data:`SETTING` with one where rows differ in it (model, noise
            model and noise settings have their own columns).
        baseline: A :data:`SETTING` that identifies the clean baseline a trial is compared
            with: trials are normalized by, and summarized with, the baseline of the same values
            (:func:`onnxnoise.report.stats.context_keys`).

    Raises:
        ValueError: On a name that is not an identifier, an unknown role or source, or a measured
            role without a source or ``measure`` (or the other way round).
    """

    name: str
    role: str
    sql: str
    dtype: Any
    doc: str
    json: bool = False
    source: str | None = None
    measure: Callable[[Mapping[str, Any]], Any] | None = None
    header: str = ""
    baseline: bool = False

    def __post_init__(self) -> None:
        if not (self.name.isidentifier() and self.name.isascii()):
            msg = f"column name must be an identifier (letters, digits, _), got {self.name!r}"
            raise ValueError(msg)
        if self.role not in ROLES:
            msg = f"column {self.name!r}: role must be one of {', '.join(ROLES)}, got {self.role!r}"
            raise ValueError(msg)
        if self.source is not None and self.source not in SOURCES:
            msg = f"column {self.name!r}: source must be one of {', '.join(SOURCES)}, got {self.source!r}"
            raise ValueError(msg)
        if (self.role in MEASURED_ROLES) != (self.source is not None or self.measure is not None):
            msg = (f"column {self.name!r}: a column of role {', '.join(MEASURED_ROLES)} (and only those) needs a "
                   f"`source` or a `measure`")
            raise ValueError(msg)

    @property
    def polars_dtype(self) -> Any:
        """:attr:`dtype` as a Polars dtype (a name is looked up in ``polars``, importing it)."""
        return getattr(pl, self.dtype) if isinstance(self.dtype, str) else self.dtype

    @property
    def nullable(self) -> bool:
        """Whether the column may be NULL (so ``ALTER TABLE ADD COLUMN`` can add it to a file with rows)."""
        sql = self.sql.upper()
        return "NOT NULL" not in sql and "PRIMARY KEY" not in sql

    def value(self, sources: Mapping[str, Any]) -> Any:
        """The value a finished trial measured (see ``source`` and ``measure``)."""
        if self.measure is not None:
            return self.measure(sources)
        found = sources.get(self.source)
        if found is None:  # a source a trial does not have (no stages): NULL
            return None
        return found[self.name] if isinstance(found, Mapping) else getattr(found, self.name)


def _table(*declared: Column) -> dict[str, Column]:
    return {c.name: c for c in declared}


_INT, _REAL, _TEXT = ("INTEGER", "Int64"), ("REAL", "Float64"), ("TEXT", "String")

#: Trial columns in record order: name -> :class:`Column`.
TRIAL_COLUMNS: dict[str, Column] = _table(
    Column("key", IDENTITY, "TEXT PRIMARY KEY", "String", "content hash of the trial and its context"),
    Column("key_version", IDENTITY, *_INT, "key derivation: 2 = the current engine, 3 = the current engine, a draw split into chunks "
           "(a tensor of 2^24 values or more), 1 = migrated from a v1 store"),
    Column("run_id", IDENTITY, *_INT, "the sweep invocation (runs table) that recorded the row"),
    Column("model", SETTING, *_TEXT, "model file name"),
    Column("model_sha256", SETTING, *_TEXT, "sha256 of the ONNX file", baseline=True),
    Column("dataset", SETTING, *_TEXT, "dataset name", header="dataset"),
    Column("dataset_fingerprint", SETTING, *_TEXT, "sha256 of the dataset's labels and pixels (or files)",
           baseline=True),
    Column("preprocess", SETTING, *_TEXT, "resolved preprocessing (JSON)", json=True, baseline=True),
    Column("mode", TRIAL, "TEXT NOT NULL", "String", "one of MODES"),
    Column("layer_index", TRIAL, *_INT, "per-layer: index of the noised layer; cumulative: layers noised"),
    Column("layers", TRIAL, *_TEXT, "names of the noised layers (JSON list)", json=True),
    Column("layers_noised", TRIAL, *_INT, "number of noised layers"),
    Column("noise_model", SETTING, "TEXT NOT NULL", "String", "noise registry name, e.g. 'gaussian-snr'"),
    Column("noise", SETTING, *_TEXT, 'JSON: {"params": {...}, "bn_variance": ..., "keep_zeros": ...}', json=True),
    Column("strength", TRIAL, *_REAL, "the noise model's strength (linear SNR for gaussian-snr); NULL: baseline"),
    Column("seed", TRIAL, *_INT, "noise seed; NULL for the baseline"),
    Column("label_offset", SETTING, *_INT, "output index of label 0", header="label offset", baseline=True),
    Column("batch_size", SETTING, *_INT, "images per session run", header="batch", baseline=True),
    Column("provider", SETTING, *_TEXT, "ONNX Runtime execution provider the trial ran on", header="provider",
           baseline=True),
    Column("settings", SETTING, *_TEXT, "settings keyed as themselves that differ from their defaults "
           "(JSON, onnxnoise.settings.own_key_values; NULL: none)", json=True, header="settings", baseline=True),
    Column("images", COUNT, *_INT, "images evaluated", source="evaluation"),
    Column("top1_correct", COUNT, *_INT, "images whose label scored highest", source="evaluation"),
    Column("top5_correct", COUNT, *_INT, "images whose label is among the five highest", source="evaluation"),
    Column("nan_count", COUNTER, *_INT, "images with a NaN or +-inf score (counted wrong)", source="evaluation"),
    Column("bn_variance_changed", COUNTER, *_INT, "BatchNormalization variances the noise made negative",
           source="draw", header="BN var. fixed"),
    Column("overflow_count", COUNTER, *_INT, "values non-finite after the cast back to a narrow float",
           source="draw", header="overflow"),
    Column("clipped_count", COUNTER, *_INT, "requantized values clipped to the integer range", source="draw",
           header="clipped"),
    Column("zeros_kept", COUNTER, *_INT, "exact zeros held at zero by keep_zeros", source="draw"),
    # The analog tile's input/output stages (--dac-bits, --adc-bits, --read-noise): summed over every
    # staged layer and batch; NULL for a trial without stages (the clean baseline, runs with them off).
    Column("dac_clipped", COUNTER, *_INT, "staged layers' input values clipped to the DAC range", source="stages",
           header="DAC clipped"),
    Column("dac_values", COUNTER, *_INT, "staged layers' input values through a DAC", source="stages"),
    Column("adc_clipped", COUNTER, *_INT, "staged layers' output values (partial sums) clipped to the ADC range",
           source="stages", header="ADC clipped"),
    Column("adc_values", COUNTER, *_INT, "staged layers' output values (partial sums) through an ADC",
           source="stages"),
    Column("changed_values", CHANGED, *_TEXT, "stored values the draw changed, per noised layer (JSON {layer: "
           "count}; a layer the noise model leaves exact by design is not a key; {} for the baseline)",
           json=True, source="draw"),
    # Paired with the clean model on the same images (0 for the baseline; NULL for failed trials and rows
    # recorded before these columns existed).
    Column("flips", PAIRED, *_INT, "images whose top-1 class changed", source="paired"),
    Column("lost_top1", PAIRED, *_INT, "top-1 hits of the clean model lost (McNemar's b)", source="paired"),
    Column("gained_top1", PAIRED, *_INT, "top-1 misses of the clean model now hits (McNemar's c)", source="paired"),
    Column("lost_top5", PAIRED, *_INT, "top-5 hits of the clean model lost", source="paired"),
    Column("gained_top5", PAIRED, *_INT, "top-5 misses of the clean model now hits", source="paired"),
    Column("seconds", TIMING, *_REAL, "wall time of the trial: draw, session and evaluation (s)"),
    Column("context", SETTING, *_TEXT, "everything the key hashed besides the trial (JSON)", json=True),
    Column("versions", SETTING, *_TEXT, "package versions (JSON)", json=True),
    Column("error", OUTCOME, *_TEXT, "why the trial failed; NULL for a finished trial"),
    Column("finished_at", TIMING, "TEXT NOT NULL", "String", "UTC ISO 8601 time the row was recorded"),
)

_BUILT_IN: frozenset[str] = frozenset(TRIAL_COLUMNS)

#: Run columns (one row per sweep invocation): name -> :class:`Column`; those a trial row has too
#: are the trial table's (``noise_model`` may be NULL here).
RUN_COLUMNS: dict[str, Column] = _table(
    Column("run_id", IDENTITY, "INTEGER PRIMARY KEY AUTOINCREMENT", "Int64", "the run's id"),
    Column("started_at", TIMING, "TEXT NOT NULL", "String", "UTC ISO 8601 start time"),
    *(TRIAL_COLUMNS[name] for name in ("model", "model_sha256", "dataset", "dataset_fingerprint", "preprocess")),
    Column("noise_model", SETTING, *_TEXT, "noise registry name"),
    TRIAL_COLUMNS["noise"],
    Column("config", SETTING, *_TEXT, "the sweep's settings (JSON)", json=True),
    TRIAL_COLUMNS["context"],
    TRIAL_COLUMNS["versions"],
)


def columns(*roles: str, source: str | None = None) -> list[Column]:
    """The trial columns of ``roles`` (all roles when none is given), in table order.

    Args:
        roles: Roles from :data:`ROLES`.
        source: Only the measured columns read from this source (one of :data:`SOURCES`).

    Raises:
        ValueError: On an unknown role or source.
    """
    unknown = [r for r in roles if r not in ROLES] + ([source] if source is not None and source not in SOURCES else [])
    if unknown:
        msg = f"unknown column role or source {', '.join(map(repr, unknown))}; roles: {', '.join(ROLES)}"
        raise ValueError(msg)
    return [c for c in TRIAL_COLUMNS.values()
            if (not roles or c.role in roles) and (source is None or c.source == source)]


def column_names(*roles: str, source: str | None = None) -> list[str]:
    """Names of :func:`columns` ``(*roles, source=source)``."""
    return [c.name for c in columns(*roles, source=source)]


def json_columns() -> frozenset[str]:
    """Names of the columns (of either table) that hold JSON text."""
    return frozenset(c.name for table in (TRIAL_COLUMNS, RUN_COLUMNS) for c in table.values() if c.json)


def measured_values(sources: Mapping[str, Any] | None) -> dict[str, Any]:
    """A trial row's measured columns (:data:`MEASURED_ROLES`): name -> value.

    Args:
        sources: ``{"evaluation": Outcomes, "draw": NoiseDraw, "paired": {name: int}}`` of a
            finished trial; ``None`` for a failed one.

    Returns:
        Every measured column with its value (:meth:`Column.value`), or ``None`` for all of
        them when ``sources`` is ``None``.
    """
    return {c.name: None if sources is None else c.value(sources) for c in columns(*MEASURED_ROLES)}


def register_column(column: Column) -> Column:
    """Add a trial column: from now on the store, bench, the summaries and migrations carry it.

    It goes after the declared columns (new files get it in ``CREATE TABLE``, older ones on
    open by ``ALTER TABLE``), so it must be nullable; a :data:`COUNTER` is summed by
    ``summarize_trials`` and bench.

    Returns:
        ``column``.

    Raises:
        ValueError: If a column of that name exists or the column cannot be NULL.
    """
    if column.name in TRIAL_COLUMNS:
        msg = f"trial column {column.name!r} exists already"
        raise ValueError(msg)
    if not column.nullable:
        msg = f"an added trial column must be nullable (older rows have no value), got {column.sql!r}"
        raise ValueError(msg)
    TRIAL_COLUMNS[column.name] = column
    return column


def unregister_column(name: str) -> None:
    """Remove a column added with :func:`register_column` (stores that have it keep it, unread).

    Raises:
        ValueError: If ``name`` is a built-in column or was not registered.
    """
    if name in _BUILT_IN or name not in TRIAL_COLUMNS:
        msg = f"{name!r} is not a registered trial column"
        raise ValueError(msg)
    del TRIAL_COLUMNS[name]


def now() -> str:
    """The current time as UTC ISO 8601 with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def canonical_json(obj: Any) -> str:
    """Sorted-key, whitespace-free JSON, as the store writes every JSON column."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def create_sql(table: str, declared: Mapping[str, Column]) -> str:
    """``CREATE TABLE`` statement for ``table`` with the ``declared`` columns in order."""
    body = ", ".join(f"{name} {column.sql}" for name, column in declared.items())
    return f"CREATE TABLE IF NOT EXISTS {table} ({body})"


def create_schema(conn: Any) -> None:
    """Create the v2 tables, ``meta`` and the pragmas in an empty database.

    Run it inside the caller's transaction.
    """
    conn.execute(create_sql("trials", TRIAL_COLUMNS))
    conn.execute(create_sql("runs", RUN_COLUMNS))
    conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    meta = {"schema_version": str(SCHEMA_VERSION), "created_at": now(), "created_by": f"onnxnoise {__version__}"}
    conn.executemany("INSERT INTO meta (name, value) VALUES (?, ?)", list(meta.items()))
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def trial_frame(records: list[Mapping[str, Any]] | list[tuple]) -> pl.DataFrame:
    """Trial rows as the store's table: :data:`TRIAL_COLUMNS` plus accuracies.

    Args:
        records: Rows as tuples in column order (JSON columns as text), or as dicts
            ``column -> value`` (missing columns null; a JSON column's object is written as
            sorted-key JSON text, as the store writes it).

    Returns:
        The columns of :data:`TRIAL_COLUMNS` in order, plus ``top1_acc`` and ``top5_acc``
        (percent, ``100 * correct / images``; null for failed trials and when
        ``images`` is 0 or null). ``TrialStore.to_frame()`` and bench's in-memory
        table both come from here, so they have one schema.
    """
    rows = [record if not isinstance(record, Mapping) else tuple(
        canonical_json(record[n]) if c.json and not isinstance(record.get(n), (str, type(None))) else record.get(n)
        for n, c in TRIAL_COLUMNS.items()) for record in records]
    schema = {name: column.polars_dtype for name, column in TRIAL_COLUMNS.items()}
    frame = pl.DataFrame(rows, schema=schema, orient="row")
    valid = pl.col("error").is_null() & pl.col("images").is_not_null() & (pl.col("images") > 0)
    return frame.with_columns(
        pl.when(valid).then(100.0 * pl.col(f"{top}_correct") / pl.col("images")).alias(f"{top}_acc")
        for top in ("top1", "top5")
    )
