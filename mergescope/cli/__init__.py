"""The `mergescope` command line (Typer): `app.py` holds the commands, `options.py` the options they share."""

from mergescope.cli.app import app, main

__all__ = ["app", "main"]
