"""The one error type for user mistakes: every CLI prints it as `error: ...` and exits 2."""


class UserError(Exception):
    """A mistake the user can fix (bad flag, missing file, unknown character): one-line message."""
