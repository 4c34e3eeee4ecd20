"""The one table that maps Moorage's errors to HTTP status codes.

Bodies are Docker's: ``{"message": "..."}``.
"""

from __future__ import annotations

from moorage.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    MoorageError,
    NotFound,
    NotSupported,
    PermissionDenied,
    Unavailable,
)

STATUS: tuple[tuple[type[MoorageError], int], ...] = (
    (NotFound, 404),
    (AlreadyExists, 409),
    (Conflict, 409),
    (InvalidArgument, 400),
    (PermissionDenied, 403),
    (NotSupported, 501),
    (Unavailable, 503),
    (FailedPrecondition, 500),
)


def status_of(exc: BaseException) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


# The reverse, for the client: a status back to the class a caller can catch.
ERROR_OF_STATUS: dict[int, type[MoorageError]] = {
    400: InvalidArgument,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    501: NotSupported,
    503: Unavailable,
}
