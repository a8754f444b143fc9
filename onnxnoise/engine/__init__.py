"""The trial engine: run context, trials, sessions, evaluation, prefix reuse, executors."""
