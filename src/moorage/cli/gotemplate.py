"""The part of Go's text/template that ``--format`` users write to docker.

``{{.State.Status}}``, ``{{json .Config}}``, ``{{index .Config.Labels "k"}}``,
``{{.Name | upper}}``, ``{{range .Mounts}}{{.Source}} {{end}}``,
``{{if .State.Running}}up{{else}}down{{end}}``, ``{{- ... -}}`` trimming, and
docker's functions (json, join, split, index, upper, lower, title, len, pad,
truncate, println). Values print as Go's ``%v`` prints decoded JSON: ``true``,
``[a b]``, ``map[k:v]``; a key that is not there prints ``<no value>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from moorage.errors import InvalidArgument

__all__ = ["render"]

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_TOKEN = re.compile(r'\s*("(?:[^"\\]|\\.)*"|`[^`]*`|\||[^\s|]+)')
_MISSING = object()


def render(template: str, data: Any) -> str:
    """Execute ``template`` with ``data`` as dot (and ``$``)."""
    nodes, _ = _parse(_lex(template), 0, ())
    out: list[str] = []
    _execute(nodes, data, data, out)
    return "".join(out)


# --------------------------------------------------------------------------- lexing


def _lex(template: str) -> list[tuple[str, str]]:
    """("text", ...) and ("action", ...) pieces, with the trim markers applied."""
    pieces: list[tuple[str, str]] = []
    pos = 0
    trim_next = False
    for match in _ACTION.finditer(template):
        text = template[pos : match.start()]
        if trim_next:
            text = text.lstrip()
        if match.group(1):
            text = text.rstrip()
        if text:
            pieces.append(("text", text))
        pieces.append(("action", match.group(2).strip()))
        trim_next = bool(match.group(3))
        pos = match.end()
    text = template[pos:]
    if trim_next:
        text = text.lstrip()
    if text:
        pieces.append(("text", text))
    return pieces


# --------------------------------------------------------------------------- parsing

Node = tuple[Any, ...]


def _parse(pieces: list[tuple[str, str]], i: int, stops: tuple[str, ...]) -> tuple[list[Node], int]:
    """Nodes up to one of ``stops`` (``end``/``else``); returns them and that piece's index."""
    nodes: list[Node] = []
    while i < len(pieces):
        kind, text = pieces[i]
        if kind == "text":
            nodes.append(("text", text))
            i += 1
            continue
        word = text.split(None, 1)[0] if text else ""
        if word in stops:
            return nodes, i
        if word in ("end", "else"):
            raise InvalidArgument(f"template: unexpected {{{{{word}}}}}")
        if word in ("range", "if", "with"):
            node, i = _parse_block(pieces, i, word, text[len(word) :].strip())
            nodes.append(node)
            continue
        if word.startswith("/*"):
            i += 1
            continue
        nodes.append(("pipe", _pipeline(text)))
        i += 1
    if stops:
        raise InvalidArgument("template: missing {{end}}")
    return nodes, i


def _parse_block(pieces: list[tuple[str, str]], i: int, word: str, arg: str) -> tuple[Node, int]:
    body, i = _parse(pieces, i + 1, ("end", "else"))
    other: list[Node] = []
    if pieces[i][1].split(None, 1)[0] == "else":
        other, i = _parse(pieces, i + 1, ("end",))
    return (word, _pipeline(arg), body, other), i + 1


def _pipeline(text: str) -> list[list[str]]:
    if not text:
        raise InvalidArgument("template: missing value for command")
    commands: list[list[str]] = [[]]
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            break
        token = match.group(1)
        pos = match.end()
        if token == "|":
            commands.append([])
        else:
            commands[-1].append(token)
    if any(not command for command in commands):
        raise InvalidArgument(f"template: malformed pipeline: {text}")
    return commands


# --------------------------------------------------------------------------- execution


def _execute(nodes: list[Node], dot: Any, root: Any, out: list[str]) -> None:
    for node in nodes:
        kind = node[0]
        if kind == "text":
            out.append(node[1])
        elif kind == "pipe":
            out.append(go_string(_run_pipeline(node[1], dot, root)))
        elif kind == "range":
            _range(node, dot, root, out)
        else:  # if, with
            value = _run_pipeline(node[1], dot, root)
            if _truthy(value):
                _execute(node[2], value if kind == "with" else dot, root, out)
            else:
                _execute(node[3], dot, root, out)


def _range(node: Node, dot: Any, root: Any, out: list[str]) -> None:
    value = _run_pipeline(node[1], dot, root)
    items: list[Any]
    if isinstance(value, dict):
        items = [value[k] for k in sorted(value)]
    elif isinstance(value, list | tuple):
        items = list(value)
    elif value is None or value is _MISSING:
        items = []
    else:
        raise InvalidArgument(f"template: range can't iterate over {go_string(value)}")
    if not items:
        _execute(node[3], dot, root, out)
    for item in items:
        _execute(node[2], item, root, out)


def _run_pipeline(commands: list[list[str]], dot: Any, root: Any) -> Any:
    value: Any = _MISSING
    for i, command in enumerate(commands):
        args = [_operand(a, dot, root) for a in command[1:]]
        if i > 0:
            args.append(value)
        value = _command(command[0], args, dot, root)
    return value


def _command(head: str, args: list[Any], dot: Any, root: Any) -> Any:
    function = _FUNCTIONS.get(head)
    if function is not None:
        try:
            return function(*args)
        except TypeError:
            raise InvalidArgument(f"template: wrong number of args for {head}") from None
    if re.fullmatch(r"[A-Za-z_]\w*", head) and head not in ("true", "false", "nil"):
        raise InvalidArgument(f'template: function "{head}" not defined')
    if args:
        raise InvalidArgument(f"template: {head} is not a function")
    return _operand(head, dot, root)


def _operand(token: str, dot: Any, root: Any) -> Any:
    if token.startswith('"'):
        return json.loads(token)
    if token.startswith("`"):
        return token[1:-1]
    if re.fullmatch(r"-?\d+", token):
        return int(token)
    if token in ("true", "false"):
        return token == "true"
    if token == "nil":
        return None
    if token == "." or token.startswith("."):
        return _field(dot, token)
    if token == "$" or token.startswith("$."):
        return _field(root, token[1:] or ".")
    raise InvalidArgument(f'template: function "{token}" not defined')


def _field(value: Any, path: str) -> Any:
    for name in (p for p in path.split(".") if p):
        if isinstance(value, dict):
            value = value.get(name, _MISSING)
        else:
            raise InvalidArgument(f"template: can't evaluate field {name} in {go_string(value)}")
    return value


def _truthy(value: Any) -> bool:
    return value is not _MISSING and bool(value)


# --------------------------------------------------------------------------- functions


def go_string(value: Any) -> str:
    """Go's ``%v`` of a decoded JSON value."""
    if value is _MISSING:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_string(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_string(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def _json(value: Any) -> str:
    return json.dumps(
        None if value is _MISSING else value, separators=(",", ":"), ensure_ascii=False
    )


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key, _MISSING)
        elif isinstance(value, list) and isinstance(key, int) and 0 <= key < len(value):
            value = value[key]
        else:
            raise InvalidArgument(f"template: index of {go_string(key)} out of range")
    return value


def _pad(value: Any, before: int, after: int) -> str:
    return " " * before + go_string(value) + " " * after


def _truncate(value: Any, length: int) -> str:
    text = go_string(value)
    return text[:length] if len(text) > length else text


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "json": _json,
    "index": _index,
    "join": lambda items, sep: sep.join(go_string(i) for i in items or ()),
    "split": lambda text, sep: text.split(sep),
    "upper": lambda text: go_string(text).upper(),
    "lower": lambda text: go_string(text).lower(),
    "title": lambda text: go_string(text).title(),
    "len": lambda value: len(value) if value not in (None, _MISSING) else 0,
    "pad": _pad,
    "truncate": _truncate,
    "println": lambda *values: " ".join(go_string(v) for v in values) + "\n",
    "print": lambda *values: "".join(go_string(v) for v in values),
}
