"""The agent's exceptions as gRPC status codes: the one mapping every ``AmphoraAgent`` method goes through."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar, cast

import grpc

from octavia_mesh.amphora_agent.agent import NotConfigured, NotFound
from octavia_mesh.amphora_agent.haproxy import ConfigInvalid, HaproxyError

P = ParamSpec("P")
R = TypeVar("R")

# The first match wins, so the order matters: ConfigInvalid is an HaproxyError; InvalidName and
# VrrpConfigInvalid are ValueErrors; VrrpError is a NotConfigured; a timed-out config test is an HaproxyError.
CODES: list[tuple[type[BaseException], grpc.StatusCode]] = [
    (ConfigInvalid, grpc.StatusCode.INVALID_ARGUMENT),
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (NotConfigured, grpc.StatusCode.FAILED_PRECONDITION),
    (HaproxyError, grpc.StatusCode.FAILED_PRECONDITION),
    (OSError, grpc.StatusCode.INTERNAL),
]


def mapped(handler: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Turn the agent's exceptions into status codes (anything else is grpc's INTERNAL).

    ``handler`` is a servicer method ``(self, request, context)``; its signature is kept as it is, so the
    decorated method still matches the generated servicer's.
    """

    @functools.wraps(handler)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await handler(*args, **kwargs)
        except tuple(kind for kind, _ in CODES) as exc:
            context = cast(grpc.aio.ServicerContext, kwargs.get("context", args[2] if len(args) > 2 else None))
            await context.abort(next(code for kind, code in CODES if isinstance(exc, kind)), str(exc))
            raise  # unreachable: abort raises

    return wrapper
