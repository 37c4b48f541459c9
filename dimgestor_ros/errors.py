"""Errors a user can fix, kept apart from bugs so commands print one line instead of a traceback."""

from __future__ import annotations

import reprlib
from typing import Any

_QUOTE = reprlib.Repr()
_QUOTE.maxlevel, _QUOTE.maxstring, _QUOTE.maxother = 3, 80, 80
_QUOTE.maxdict = _QUOTE.maxlist = _QUOTE.maxtuple = _QUOTE.maxset = 8


class UserError(Exception):
    """A problem with the user's input (a file, an argument, a parameter), with the fix in its message."""


def quoted(value: Any) -> str:
    """repr() of a value read from a user's file, cut to a few items and characters for a one-line error message.

    A YAML alias chain (``b: [*a, *a, ...]`` nested a few levels) is a file of a few hundred bytes whose full
    repr() takes minutes and gigabytes.
    """
    return _QUOTE.repr(value)
