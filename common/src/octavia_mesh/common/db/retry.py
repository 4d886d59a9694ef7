"""Which database errors mean "run the transaction again".

InnoDB resolves lock cycles by killing one transaction (error 1213) or times
a lock wait out (1205); PostgreSQL reports deadlocks (40P01) and
serialization failures (40001); SQLite can still say "database is locked"
after its busy timeout. The transaction was rolled back in each case, so the
caller may simply retry it, as oslo.db's ``retry_on_deadlock`` does for
Octavia: :func:`retry_transaction` is the one loop every service uses.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError

logger = logging.getLogger(__name__)
T = TypeVar("T")

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


#: How often a transaction the database rolled back is run before the error is raised.
ATTEMPTS = 8


async def retry_transaction(work: Callable[[], Awaitable[T]], *, attempts: int = ATTEMPTS) -> T:
    """Run ``work`` (which opens, does and commits one transaction), again while the database rolls it back
    to break a deadlock or a lock wait (:func:`is_retryable`); any other error, or the last attempt's, is
    raised. Between attempts a short random pause (5-20 ms, growing with the attempt) lets the winner commit
    and keeps two losers from meeting again."""
    for attempt in range(attempts):
        try:
            return await work()
        except Exception as exc:
            if not is_retryable(exc) or attempt == attempts - 1:
                raise
            logger.info("transaction rolled back (%s); retrying", type(exc.__cause__ or exc).__name__)
            await asyncio.sleep(random.uniform(0.005, 0.02) * (attempt + 1))
    raise AssertionError("unreachable")
