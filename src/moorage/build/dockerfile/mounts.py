"""``RUN --mount=...`` specifications as typed records.

A mount is a CSV list of ``key=value`` fields (and the bare words ``ro``, ``rw``,
``readonly``, ``readwrite``, ``required``)::

    --mount=type=cache,target=/root/.cache/pip,sharing=locked
    --mount=type=bind,from=build,source=/out,target=/in
    --mount=type=secret,id=token,env=TOKEN,required
    --mount=type=tmpfs,target=/tmp,size=64m

Types are ``bind`` (the default; read-only unless ``rw``), ``cache`` and ``tmpfs``
(read-write), ``secret`` and ``ssh`` (read-only). Values may use variables; they are
expanded at build time with the stage's variables, field by field, except ``from``,
which must name a stage or an image literally (it decides the stage graph before any
variable is known).
"""

from __future__ import annotations

import csv
import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MOUNT_TYPES", "Mount", "MountError", "parse_mount"]

MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
SHARING_MODES = ("shared", "private", "locked")
_KEYS = (
    "type", "from", "source", "src", "target", "dst", "destination", "readonly", "ro",
    "readwrite", "rw", "required", "size", "id", "sharing", "mode", "uid", "gid", "env",
)  # fmt: skip
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)*) ?([kKmMgGtTpP])?[iI]?[bB]?\Z")
_DECIMAL = re.compile("[0-9]+")
_OCTAL = re.compile("[0-7]+")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


class MountError(ValueError):
    """A mount specification that cannot be used."""


@dataclass(frozen=True)
class Mount:
    """One ``--mount``; fields that do not apply to the type keep their defaults."""

    type: str = "bind"
    target: str = ""
    source: str = ""
    from_: str = ""  # a stage name or index, an image, or "" (the build context)
    readonly: bool = True
    size: int = 0  # tmpfs, bytes; 0 means no limit
    id: str = ""  # cache id or secret id
    sharing: str = ""  # cache: shared (when empty), private or locked
    required: bool = False  # secret, ssh
    env: str | None = None  # secret: also expose it as this variable
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None


def parse_mount(spec: str, expand: Callable[[str], str] | None = None) -> Mount:
    """Parse one ``--mount`` value, expanding each value with ``expand``.

    Without ``expand`` (at parse time) a spec that uses variables is only checked for
    its ``from``; everything else waits for the build. Raises :class:`MountError`.
    """
    fields = _fields(spec)
    if expand is None and "$" in spec:
        return Mount(from_=_literal_from(fields))
    return _build(fields, expand or _same)


def _same(word: str) -> str:
    return word


def _fields(spec: str) -> list[str]:
    try:
        rows = list(csv.reader([spec], strict=True))
    except csv.Error as exc:
        raise MountError(f"failed to parse csv mounts: {exc}") from None
    return rows[0] if rows else [""]


def _literal_from(fields: list[str]) -> str:
    found = ""
    for field in fields:
        key, _, value = field.partition("=")
        if key.lower() == "from":
            at = value.find("$")
            if at != -1 and at != len(value) - 1:
                raise MountError(
                    "'from' doesn't support variable expansion, define alias stage instead"
                )
            found = value
    return found


class _Builder:
    """The fields of one mount as they are read, in order."""

    def __init__(self) -> None:
        self.type = "bind"
        self.target = ""
        self.source = ""
        self.from_ = ""
        self.readonly: bool | None = None  # None: the type's default
        self.size = 0
        self.id = ""
        self.sharing = ""
        self.required = False
        self.env: str | None = None
        self.mode: int | None = None
        self.uid: int | None = None
        self.gid: int | None = None

    def mount(self) -> Mount:
        readonly = self.readonly
        if readonly is None:
            readonly = self.type not in ("cache", "tmpfs")
        return Mount(
            type=self.type,
            target=self.target,
            source=self.source,
            from_=self.from_,
            readonly=readonly,
            size=self.size,
            id=self.id,
            sharing=self.sharing,
            required=self.required,
            env=self.env,
            mode=self.mode,
            uid=self.uid,
            gid=self.gid,
        )


def _build(fields: list[str], expand: Callable[[str], str]) -> Mount:
    b = _Builder()
    for field in fields:
        key, sep, value = field.partition("=")
        key = key.lower()
        if sep:
            _keyed(b, key, expand(value), field)
        else:
            _bare(b, key, field)
    _validate(b)
    return b.mount()


def _bare(b: _Builder, key: str, field: str) -> None:
    if key in ("readonly", "ro"):
        b.readonly = True
    elif key in ("readwrite", "rw"):
        b.readonly = False
    elif key == "required":
        _secret_only(b, key)
        b.required = True
    else:
        raise MountError(f"invalid field '{field}' must be a key=value pair")


def _keyed(b: _Builder, key: str, value: str, field: str) -> None:
    if key == "type":
        b.type = _choice(value.lower(), MOUNT_TYPES, "mount type", value)
    elif key in _FIELD_NAMES:
        setattr(b, _FIELD_NAMES[key], value)
    elif key in ("readonly", "ro"):
        b.readonly = _boolean(key, value)
    elif key in ("readwrite", "rw"):
        b.readonly = not _boolean(key, value)
    elif key == "required":
        _secret_only(b, key)
        b.required = _boolean(key, value)
    elif key == "size":
        if b.type != "tmpfs":
            raise MountError(f"unexpected key '{key}' for mount type '{b.type}'")
        b.size = _size(key, value)
    elif key == "sharing":
        b.sharing = _choice(value.lower(), SHARING_MODES, "sharing value", value)
    elif key in ("mode", "uid", "gid"):
        setattr(b, key, _number(key, value, 8 if key == "mode" else 10))
    else:
        close = difflib.get_close_matches(key, _KEYS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise MountError(f"unexpected key '{key}' in '{field}'{hint}")


_FIELD_NAMES = {
    "from": "from_",
    "id": "id",
    "source": "source",
    "src": "source",
    "target": "target",
    "dst": "target",
    "destination": "target",
    "env": "env",
}


def _validate(b: _Builder) -> None:
    if b.type not in ("secret", "ssh", "cache"):
        for key, value in (("mode", b.mode), ("uid", b.uid), ("gid", b.gid)):
            if value is not None:
                raise MountError(f'{key} not allowed for "{b.type}" type mounts')
    if b.type == "secret":
        if b.from_:
            raise MountError("secret mount should not have a from")
        if b.sharing:
            raise MountError("secret mount should not define sharing")
        if not (b.source or b.target or b.id):
            raise MountError("invalid secret mount. one of source, target required")
        if b.source and b.id:
            raise MountError("both source and id can't be set")
    if b.sharing and b.type != "cache":
        raise MountError(f"invalid cache sharing set for {b.type} mount")


def _secret_only(b: _Builder, key: str) -> None:
    if b.type not in ("secret", "ssh"):
        raise MountError(f"unexpected key '{key}' for mount type '{b.type}'")


def _choice(value: str, allowed: tuple[str, ...], what: str, given: str) -> str:
    if value not in allowed:
        raise MountError(f'unsupported {what} "{given}" (one of: {", ".join(allowed)})')
    return value


def _boolean(key: str, value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise MountError(f"invalid value for {key}: {value}")


def _number(key: str, value: str, base: int) -> int:
    digits = _OCTAL if base == 8 else _DECIMAL
    if digits.fullmatch(value) is None or int(value, base) >= 1 << 32:
        raise MountError(f"invalid value {value} for {key}")
    return int(value, base)


def _size(key: str, value: str) -> int:
    """Docker's RAM sizes: ``64m``, ``1.5g``, ``512KiB``; units are powers of 1024."""
    found = _SIZE.match(value)
    if found is None:
        raise MountError(f"invalid value for {key}: {value}")
    try:
        number = float(found[1])
    except ValueError:
        raise MountError(f"invalid value for {key}: {value}") from None
    return int(number * _UNITS[(found[2] or "").lower()])
