"""The one exception type for bad input that a user can fix.

Raise :class:`UserError` (a ``ValueError``) with a message that names the problem and says what
to do. ``python -m basam_lite`` prints such an error as one line (``error: ...``) and exits 2;
any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input, bad data or a refused request: the message says what to do instead."""
