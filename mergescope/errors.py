"""Errors a user can cause, printed as one line with a hint and no traceback."""


class MergescopeError(Exception):
    """A failure with a message meant for the user; `exit_code` 1 means a runtime failure."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def one_line(self) -> str:
        """The message and hint on one line, as the CLI prints it."""
        text = " ".join(str(self).split())
        return f"{text} (hint: {self.hint})" if self.hint else text


class ConfigError(MergescopeError):
    """Bad usage or input: a malformed spec, an unknown name, incompatible parents (exit 2)."""

    exit_code = 2


class PrerequisiteError(MergescopeError):
    """An optional dependency or external service is missing (exit 1)."""


def did_you_mean(name: str, known: list[str] | set[str]) -> str:
    """A 'did you mean' hint for an unknown name, or the list of known names."""
    import difflib

    close = difflib.get_close_matches(name, sorted(known), n=3)
    if close:
        return "did you mean " + ", ".join(repr(c) for c in close) + "?"
    return "known: " + ", ".join(sorted(known))
