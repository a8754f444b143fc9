"""The durable SQLite trial store."""
