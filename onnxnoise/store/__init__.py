"""The durable SQLite trial store (schema v2; a v1 store is migrated in place on open)."""

from onnxnoise.store.schema import APPLICATION_ID, RUN_COLUMNS, SCHEMA_VERSION, STORE_NAME, TRIAL_COLUMNS
from onnxnoise.store.cleanup import run_store
from onnxnoise.store.store import TrialStore, open_store

__all__ = [
    "SCHEMA_VERSION", "APPLICATION_ID", "TRIAL_COLUMNS", "RUN_COLUMNS", "STORE_NAME", "TrialStore", "open_store",
    "run_store",
]
