"""Run storage: the SQLite results store (the source of truth), the run directory, typed records, provenance."""
