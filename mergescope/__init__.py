"""mergescope: a toolkit for studying how merged language models inherit and combine their parents' skills."""

__version__ = "0.2.0"
