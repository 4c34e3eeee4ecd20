"""How the CLI prints: aligned tables, human sizes and ages, JSON, Go-like templates.

``--format`` takes ``table`` (the default), ``json`` (one JSON object per line),
or a template in the style people know from docker: ``{{.ID}}\t{{.Size}}``,
``{{json .}}``, ``{{.Repository}}:{{.Tag}}``, and the ``table`` prefix
(``table {{.ID}}\t{{.Tag}}``) for a template with a header row.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from typing import Any

import click

from moorage.errors import InvalidArgument

_FIELD = re.compile(r"\{\{\s*(json\s+)?\.(\w*)\s*\}\}")


def human_size(size: float) -> str:
    """Docker's units: decimal, three significant digits (``4.26MB``)."""
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000.0
        i += 1
    if i == 0:
        return f"{int(size)}B"
    text = f"{size:.3g}"
    return f"{text}{units[i]}"


def human_age(timestamp: float, now: float | None = None) -> str:
    """``2 weeks ago``-style durations, as docker prints them."""
    if timestamp <= 0:
        return "N/A"
    seconds = int((now if now is not None else time.time()) - timestamp)
    if seconds < 1:
        return "Less than a second ago"
    steps = (
        (60, 1, "second"),
        (3600, 60, "minute"),
        (86400 * 2, 3600, "hour"),
        (86400 * 7 * 2, 86400, "day"),
        (86400 * 30 * 3, 86400 * 7, "week"),
        (86400 * 365 * 2, 86400 * 30, "month"),
    )
    for limit, unit, name in steps:
        if seconds < limit:
            n = seconds // unit
            if name == "hour" and n == 1:
                return "About an hour ago"
            return f"{n} {name}{'s' if n != 1 else ''} ago"
    return f"{seconds // (86400 * 365)} years ago"


def render_template(template: str, row: dict[str, Any]) -> str:
    def field(match: re.Match[str]) -> str:
        as_json, name = match.group(1), match.group(2)
        value: Any = row if not name else row.get(name)
        if name and value is None and name not in row:
            raise InvalidArgument(f"template: no field {name!r} (have: {', '.join(row)})")
        if as_json:
            return json.dumps(value)
        return "" if value is None else str(value)

    text = template.replace("\\t", "\t").replace("\\n", "\n")
    return _FIELD.sub(field, text)


def print_rows(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[tuple[str, str]],
    fmt: str | None,
) -> None:
    """``columns`` are (header, field); ``fmt`` is None/table, json or a template."""
    if fmt == "json":
        for row in rows:
            click.echo(json.dumps(row))
        return
    if fmt and fmt != "table":
        header = fmt.startswith("table ")
        template = fmt.removeprefix("table ").strip() if header else fmt
        if header:
            names = {field: title for title, field in columns}
            click.echo(
                _FIELD.sub(
                    lambda m: names.get(m.group(2), m.group(2).upper()),
                    template.replace("\\t", "\t"),
                )
            )
        for row in rows:
            click.echo(render_template(template, row))
        return
    table = [[title for title, _ in columns]]
    table += [[str(row.get(field, "")) for _, field in columns] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    for r in table:
        click.echo("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def parse_filters(values: Sequence[str]) -> dict[str, list[str]]:
    """``--filter key=value``, repeated: docker's filter arguments."""
    out: dict[str, list[str]] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not key or not sep:
            raise InvalidArgument(f"bad format of filter: {item!r} (expected name=value)")
        out.setdefault(key.strip().lower(), []).append(value)
    return out


def print_inspected(found: list[dict[str, Any]], errors: list[str], fmt: str | None) -> None:
    """``inspect`` of several objects: a JSON array (or a template per object), then
    the errors; exit 1 when there were any (docker prints what it found all the same)."""
    import sys

    if fmt:
        for item in found:
            click.echo(render_template(fmt, item))
    else:
        click.echo(json.dumps(found, indent=4))
    for message in errors:
        click.echo(f"Error response from daemon: {message}", err=True)
    if errors:
        sys.exit(1)
