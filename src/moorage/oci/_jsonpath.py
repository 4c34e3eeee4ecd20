"""Where a value sits in a JSON document, for errors that name it: ``config.json: a.b[2]``.

Shared by the runtime spec and the image model. Kept free of other imports and of
``from __future__ import annotations`` (which makes NamedTuple compile its field
annotations): the runtime spec is imported on every container start.
"""

import json
import re
from typing import NamedTuple

from moorage.errors import InvalidArgument

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


class At(NamedTuple):
    """A place in a JSON document: ``source`` names the document, ``path`` the value."""

    source: str
    path: str = ""

    def member(self, key: str) -> "At":
        # Keys that are not identifiers ("os.version", "80/tcp") are quoted in brackets.
        if _IDENTIFIER.fullmatch(key):
            return At(self.source, f"{self.path}.{key}" if self.path else key)
        return At(self.source, f"{self.path}[{quote(key)}]")

    def item(self, index: int) -> "At":
        return At(self.source, f"{self.path}[{index}]")

    def fail(self, problem: str) -> InvalidArgument:
        where = f"{self.source}: {self.path}" if self.path else self.source
        return InvalidArgument(f"{where}: {problem}")
