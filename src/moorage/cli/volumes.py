"""Volume commands: ``moor volume create/ls/inspect/rm/prune``, as docker's."""

from __future__ import annotations

import sys
import urllib.parse
from typing import Any

import click

from moorage.cli.connect import client
from moorage.cli.output import (
    human_size,
    parse_filters,
    print_inspected,
    print_rows,
)
from moorage.errors import InvalidArgument, MoorageError


def _client(ctx: click.Context) -> Any:
    return client(ctx.obj.get("host") if ctx.obj else None)


def _pairs(values: tuple[str, ...], what: str, need_value: bool) -> dict[str, str]:
    """``k=v`` options into a dict; a bare ``k`` is ``k=""`` unless a value is needed."""
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not key or (need_value and not sep):
            raise InvalidArgument(f"invalid {what}: {item!r} (want key=value)")
        out[key] = value
    return out


def _row(volume: dict[str, Any]) -> dict[str, Any]:
    """The fields docker's ``volume ls --format`` knows."""
    labels = volume.get("Labels") or {}
    return {
        "Name": volume["Name"],
        "Driver": volume["Driver"],
        "Scope": volume.get("Scope", "local"),
        "Mountpoint": volume.get("Mountpoint", ""),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "CreatedAt": volume.get("CreatedAt", ""),
        "Links": "N/A",
        "Size": "N/A",
    }


@click.command("create")
@click.option("--name", "name_opt", default=None, help="the volume's name")
@click.option("-d", "--driver", default="local", show_default=True, help="volume driver")
@click.option("-o", "--opt", "opts", multiple=True, help="driver option key=value")
@click.option("--label", "labels", multiple=True, help="label key=value")
@click.argument("name", required=False)
@click.pass_context
def create_cmd(
    ctx: click.Context,
    name_opt: str | None,
    driver: str,
    opts: tuple[str, ...],
    labels: tuple[str, ...],
    name: str | None,
) -> None:
    """Create a volume (a random name when none is given); prints its name."""
    if name and name_opt and name != name_opt:
        raise InvalidArgument(
            f"conflicting options: either specify --name or provide positional arg, not both"
            f" ({name_opt!r} and {name!r})"
        )
    body = {
        "Name": name or name_opt or "",
        "Driver": driver,
        "DriverOpts": _pairs(opts, "driver option", need_value=True),
        "Labels": _pairs(labels, "label", need_value=False),
    }
    volume = _client(ctx).request("POST", "/volumes/create", json_body=body).json()
    click.echo(volume["Name"])


@click.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="only volume names")
@click.option(
    "-f", "--filter", "filters", multiple=True, help="key=value (name, label, dangling, driver)"
)
@click.option("--format", "fmt", default=None, help="table, json or a Go-like template")
@click.pass_context
def ls_cmd(ctx: click.Context, quiet: bool, filters: tuple[str, ...], fmt: str | None) -> None:
    """List volumes."""
    wanted = parse_filters(filters)
    data = _client(ctx).get_json("/volumes", filters=wanted or None)
    volumes = sorted(data.get("Volumes") or [], key=lambda v: v["Name"])
    for warning in data.get("Warnings") or []:
        click.echo(f"WARNING: {warning}", err=True)
    if quiet:
        for volume in volumes:
            click.echo(volume["Name"])
        return
    print_rows([_row(v) for v in volumes], [("DRIVER", "Driver"), ("VOLUME NAME", "Name")], fmt)


@click.command("inspect")
@click.option("-f", "--format", "fmt", default=None, help="a Go-like template")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def inspect_cmd(ctx: click.Context, fmt: str | None, names: tuple[str, ...]) -> None:
    """Show volumes as JSON; exit 1 if one is missing (the others are still shown)."""
    c = _client(ctx)
    found: list[dict[str, Any]] = []
    errors: list[str] = []
    for name in names:
        try:
            found.append(c.get_json(f"/volumes/{_quote(name)}"))
        except MoorageError as exc:
            errors.append(str(exc))
    print_inspected(found, errors, fmt)


@click.command("rm")
@click.option("-f", "--force", is_flag=True, help="no error for a missing volume")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def rm_cmd(ctx: click.Context, force: bool, names: tuple[str, ...]) -> None:
    """Remove volumes (one in use by a container is refused, even with --force)."""
    c = _client(ctx)
    failed = False
    for name in names:
        try:
            c.request("DELETE", f"/volumes/{_quote(name)}", params={"force": force}).read()
        except MoorageError as exc:
            click.echo(f"Error response from daemon: {exc}", err=True)
            failed = True
            continue
        click.echo(name)
    if failed:
        sys.exit(1)


@click.command("prune")
@click.option("-a", "--all", "all_volumes", is_flag=True, help="named volumes too")
@click.option("-f", "--force", is_flag=True, help="do not ask for confirmation")
@click.option("--filter", "filters", multiple=True, help="label=KEY[=VALUE] or label!=...")
@click.pass_context
def prune_cmd(ctx: click.Context, all_volumes: bool, force: bool, filters: tuple[str, ...]) -> None:
    """Remove unused volumes: anonymous ones, or all with -a."""
    wanted = parse_filters(filters)
    if all_volumes:
        wanted["all"] = ["true"]
    if not force:
        what = "all local volumes" if all_volumes else "anonymous local volumes"
        click.confirm(
            f"WARNING! This will remove {what} not used by at least one container.\n"
            "Are you sure you want to continue?",
            abort=True,
        )
    result = _client(ctx).request("POST", "/volumes/prune", params={"filters": wanted}).json()
    deleted = result.get("VolumesDeleted") or []
    if deleted:
        click.echo("Deleted Volumes:")
        for name in deleted:
            click.echo(name)
        click.echo()
    click.echo(f"Total reclaimed space: {human_size(result.get('SpaceReclaimed', 0))}")


def _quote(name: str) -> str:
    # A name with "/" or "?" in it is no volume's; it must still reach the daemon as one
    # path segment, for the daemon's "no such volume" naming it.
    return urllib.parse.quote(name, safe="")


def register(cli: click.Group) -> None:
    @cli.group("volume")
    def volume_group() -> None:
        """Manage volumes."""

    volume_group.add_command(create_cmd)
    volume_group.add_command(ls_cmd)
    volume_group.add_command(ls_cmd, "list")
    volume_group.add_command(inspect_cmd)
    volume_group.add_command(rm_cmd)
    volume_group.add_command(rm_cmd, "remove")
    volume_group.add_command(prune_cmd)
