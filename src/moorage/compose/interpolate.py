"""Variable interpolation in compose files, as the Compose Specification defines it.

``$VAR`` and ``${VAR}`` are replaced by the variable's value (empty, with a warning,
when it is not set); ``$$`` is a literal ``$``. In braces, an operator gives a
fallback or a check, its word itself interpolated (so defaults nest)::

    ${VAR:-default}   default when VAR is unset or empty     ${VAR-default}  when unset
    ${VAR:?message}   error when VAR is unset or empty       ${VAR?message}  when unset
    ${VAR:+other}     other when VAR is set and not empty    ${VAR+other}    when set

A ``$`` followed by anything else is an error (``you may need to escape any $ with
another $``), as docker compose has it. Only values are interpolated, never keys:
:func:`interpolate_tree` walks a loaded YAML tree and names the path of a failure.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from moorage.errors import InvalidArgument

__all__ = ["InterpolationError", "Lookup", "interpolate", "interpolate_tree"]

Lookup = Callable[[str], str | None]
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


class InterpolationError(InvalidArgument):
    """A value that cannot be interpolated; ``path`` is where it is in the file."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.detail = message


class _Invalid(Exception):
    pass


def interpolate(text: str, lookup: Lookup, on_missing: Callable[[str], None] | None = None) -> str:
    """``text`` with its variables replaced (see the module doc).

    Example: ``interpolate("${A:-x}$$", {}.get) == "x$"``. Raises
    :class:`InterpolationError` for a required variable without a value or a
    malformed ``$``; ``on_missing`` hears of every variable used but not set.
    """
    try:
        return _expand(text, lookup, on_missing or (lambda name: None))
    except _Invalid:
        raise InterpolationError(
            f'invalid interpolation format: "{text}": you may need to escape any $ with another $'
        ) from None


def _expand(text: str, lookup: Lookup, on_missing: Callable[[str], None]) -> str:
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        dollar = text.find("$", i)
        if dollar < 0:
            out.append(text[i:])
            break
        out.append(text[i:dollar])
        i = dollar + 1
        if i < n and text[i] == "$":
            out.append("$")
            i += 1
            continue
        if i < n and text[i] == "{":
            end = _closing_brace(text, i + 1)
            out.append(_braced(text[i + 1 : end], lookup, on_missing))
            i = end + 1
            continue
        match = _NAME.match(text, i)
        if match is None:
            raise _Invalid
        out.append(_value(match.group(), lookup, on_missing))
        i = match.end()
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    """The index of the ``}`` closing a ``${`` whose content starts at ``start``."""
    depth, i = 1, start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise _Invalid


def _value(name: str, lookup: Lookup, on_missing: Callable[[str], None]) -> str:
    value = lookup(name)
    if value is None:
        on_missing(name)
        return ""
    return value


def _braced(body: str, lookup: Lookup, on_missing: Callable[[str], None]) -> str:
    match = _NAME.match(body)
    if match is None:
        raise _Invalid
    name, rest = match.group(), body[match.end() :]
    if not rest:
        return _value(name, lookup, on_missing)
    operator = next((op for op in _OPERATORS if rest.startswith(op)), None)
    if operator is None:
        raise _Invalid
    word = rest[len(operator) :]
    value = lookup(name)
    # With a colon, an empty value counts as unset.
    unset = value is None or (operator.startswith(":") and value == "")
    kind = operator[-1]
    if kind == "-":
        return _expand(word, lookup, on_missing) if unset else str(value)
    if kind == "+":
        return "" if unset else _expand(word, lookup, on_missing)
    if unset:
        message = _expand(word, lookup, on_missing)
        raise InterpolationError(
            f"required variable {name} is missing a value" + (f": {message}" if message else "")
        )
    return str(value)


def interpolate_tree(
    tree: Any,
    lookup: Lookup,
    on_missing: Callable[[str], None] | None = None,
    path: str = "",
) -> Any:
    """A copy of a YAML tree with every string value interpolated; keys are kept.

    An :class:`InterpolationError` carries the dotted path of the value
    (``services.web.environment.PASSWORD``).
    """
    if isinstance(tree, str):
        try:
            return interpolate(tree, lookup, on_missing)
        except InterpolationError as exc:
            raise InterpolationError(exc.detail, path) from None
    if isinstance(tree, dict):
        return {
            key: interpolate_tree(value, lookup, on_missing, _join(path, str(key)))
            for key, value in tree.items()
        }
    if isinstance(tree, list):
        return [
            interpolate_tree(value, lookup, on_missing, f"{path}[{i}]")
            for i, value in enumerate(tree)
        ]
    rewrap = getattr(tree, "rewrap", None)  # the loader's !override wrapper
    if rewrap is not None:
        return rewrap(interpolate_tree(tree.value, lookup, on_missing, path))
    return tree


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
