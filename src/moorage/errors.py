"""The closed set of errors Moorage raises.

Every error a caller can act on is one of these classes or a subclass of one::

    MoorageError
    ├── NotFound             no such container, image, bundle, file
    ├── AlreadyExists        an id or name that is taken
    ├── Conflict             the object is in the wrong state for the request
    ├── InvalidArgument      malformed input: a config, a flag, a reference
    ├── FailedPrecondition   the system is not ready: a missing kernel feature, a hook failed
    ├── Unavailable          a peer or a daemon that does not answer
    ├── NotSupported         a valid request for something Moorage does not do
    └── PermissionDenied     the caller may not do this

Messages are lower-case, have no trailing period, and name the input they are about:
``no such container: web``. Foreign exceptions are translated where they cross into
Moorage (``raise NotFound(...) from exc``); the API layer maps classes to status codes
in one table.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "Conflict",
    "FailedPrecondition",
    "InvalidArgument",
    "MoorageError",
    "NotFound",
    "NotSupported",
    "PermissionDenied",
    "Unavailable",
]


class MoorageError(Exception):
    """Root of every error Moorage raises on purpose."""


class NotFound(MoorageError):
    """The named object does not exist."""


class AlreadyExists(MoorageError):
    """An object with that id or name exists already."""


class Conflict(MoorageError):
    """The object's state does not allow the operation (start a running container)."""


class InvalidArgument(MoorageError):
    """The input is malformed or inconsistent."""


class FailedPrecondition(MoorageError):
    """The system lacks something the operation needs, or a step of it failed."""


class Unavailable(MoorageError):
    """A peer, daemon or service could not be reached."""


class NotSupported(MoorageError):
    """A well-formed request for a feature Moorage does not implement."""


class PermissionDenied(MoorageError):
    """The caller is not allowed to do this."""
