"""Errors a user can fix, kept apart from bugs so commands print one line instead of a traceback."""


class UserError(Exception):
    """A problem with the user's input (a file, an argument, a parameter), with the fix in its message."""
