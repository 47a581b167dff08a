"""Usage errors (a wrong type, a missing argument, an unknown option) as one `error:` line, like the project's own.

Typer prints click's usage errors as a boxed panel with the usage text. mergescope prints every error a user
can cause the same way: one line naming the problem and the fix, exit 2, no traceback. `--help` is untouched.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import typer

# typer vendors its own copy of click: its exceptions are not click's (nor importable under click's names)
from typer._click.exceptions import ClickException, NoArgsIsHelpError
from typer.core import TyperGroup


def one_line(error: ClickException) -> str:
    """The error's message on one line, with a hint pointing at the command's help."""
    message = " ".join(error.format_message().split())
    context = getattr(error, "ctx", None)
    # the root's name is the program's as invoked (a test runner's "root"): say the installed one
    command = " ".join(["mergescope", *context.command_path.split()[1:]]) if context is not None else "mergescope"
    return f"error: {message} (hint: see `{command} --help`)"


class OneLineUsageErrors(TyperGroup):
    """The top-level command group: runs a command and prints click's errors as one line."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        passed = dict(standalone_mode=False, windows_expand_args=windows_expand_args, **extra)
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, **passed)
        try:
            code = super().main(args, prog_name, complete_var, **passed)
        except NoArgsIsHelpError as error:  # a bare `mergescope` or `mergescope zoo`: the help, as click shows it
            typer.echo(error.ctx.get_help(), err=True)
            sys.exit(error.exit_code)
        except ClickException as error:
            typer.echo(one_line(error), err=True)
            sys.exit(error.exit_code)
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(1)
        # without standalone mode click returns a command's exit code (typer.Exit) or its return value (None)
        sys.exit(code if isinstance(code, int) else 0)
