"""Which database errors mean "run the transaction again".

InnoDB resolves lock cycles by killing one transaction (error 1213) or times
a lock wait out (1205); PostgreSQL reports deadlocks (40P01) and
serialization failures (40001); SQLite can still say "database is locked"
after its busy timeout. The transaction was rolled back in each case, so the
caller may simply retry it, as oslo.db's ``retry_on_deadlock`` does for
Octavia.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

_MYSQL_CODES = {1213, 1205}
_POSTGRES_CODES = {"40P01", "40001"}


def is_retryable(exc: BaseException) -> bool:
    """Whether ``exc`` is a deadlock, lock timeout or serialization failure."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if code in _POSTGRES_CODES:
        return True
    args = getattr(orig, "args", ()) or ()
    if args and isinstance(args[0], int) and args[0] in _MYSQL_CODES:
        return True
    return "database is locked" in str(orig)
