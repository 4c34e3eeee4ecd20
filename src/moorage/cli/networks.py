"""Network commands: ``moor network create/ls/inspect/rm/prune/connect/disconnect``,
as docker's."""

from __future__ import annotations

import sys
from typing import Any

import click

from moorage.cli.connect import client
from moorage.cli.output import parse_filters, print_inspected, print_rows
from moorage.errors import InvalidArgument, MoorageError


def _client(ctx: click.Context) -> Any:
    return client(ctx.obj.get("host") if ctx.obj else None)


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, _, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"invalid {what}: {item!r} (want key=value)")
        out[key] = value
    return out


def _segment(name: str) -> str:
    """A network name or id as one path segment (the daemon names it when unknown)."""
    from moorage.api.client import quote

    return quote(name)


@click.command("create")
@click.option("-d", "--driver", default="bridge", show_default=True, help="Driver")
@click.option("--subnet", default=None, help="Subnet in CIDR format")
@click.option("--gateway", default=None, help="IPv4 gateway for the subnet")
@click.option("--internal", is_flag=True, help="Restrict external access to the network")
@click.option("--label", "labels", multiple=True, help="Set metadata on a network")
@click.option("-o", "--opt", "opts", multiple=True, help="Set driver specific options")
@click.option("--attachable", is_flag=True, help="Accepted for compatibility")
@click.argument("name")
@click.pass_context
def create_cmd(
    ctx: click.Context,
    driver: str,
    subnet: str | None,
    gateway: str | None,
    internal: bool,
    labels: tuple[str, ...],
    opts: tuple[str, ...],
    attachable: bool,
    name: str,
) -> None:
    """Create a network; prints its id."""
    if gateway and not subnet:
        raise InvalidArgument("every ip-range or gateway must have a corresponding subnet")
    pool = {k: v for k, v in (("Subnet", subnet), ("Gateway", gateway)) if v}
    body = {
        "Name": name,
        "Driver": driver,
        "Internal": internal,
        "Attachable": attachable,
        "Labels": _pairs(labels, "label"),
        "Options": _pairs(opts, "option"),
        "IPAM": {"Driver": "default", "Config": [pool] if pool else []},
    }
    created = _client(ctx).request("POST", "/networks/create", json_body=body).json()
    click.echo(created["Id"])


def _row(network: dict[str, Any], no_trunc: bool) -> dict[str, Any]:
    labels = network.get("Labels") or {}
    return {
        "ID": network["Id"] if no_trunc else network["Id"][:12],
        "Name": network["Name"],
        "Driver": network["Driver"],
        "Scope": network.get("Scope", "local"),
        "IPv6": str(bool(network.get("EnableIPv6"))).lower(),
        "Internal": str(bool(network.get("Internal"))).lower(),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "CreatedAt": network.get("Created", ""),
    }


@click.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only display network IDs")
@click.option("-f", "--filter", "filters", multiple=True, help="Provide filter values")
@click.option("--format", "fmt", default=None, help="table, json or a Go-like template")
@click.option("--no-trunc", is_flag=True, help="Do not truncate the output")
@click.pass_context
def ls_cmd(
    ctx: click.Context, quiet: bool, filters: tuple[str, ...], fmt: str | None, no_trunc: bool
) -> None:
    """List networks."""
    wanted = parse_filters(filters)
    networks = _client(ctx).get_json("/networks", filters=wanted or None)
    networks.sort(key=lambda n: n["Name"])
    rows = [_row(n, no_trunc) for n in networks]
    if quiet:
        for row in rows:
            click.echo(row["ID"])
        return
    columns = [("NETWORK ID", "ID"), ("NAME", "Name"), ("DRIVER", "Driver"), ("SCOPE", "Scope")]
    print_rows(rows, columns, fmt)


@click.command("inspect")
@click.option("-f", "--format", "fmt", default=None, help="a Go-like template")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def inspect_cmd(ctx: click.Context, fmt: str | None, names: tuple[str, ...]) -> None:
    """Show networks as JSON; exit 1 if one is missing (the others are still shown)."""
    c = _client(ctx)
    found: list[dict[str, Any]] = []
    errors: list[str] = []
    for name in names:
        try:
            found.append(c.get_json(f"/networks/{_segment(name)}"))
        except MoorageError as exc:
            errors.append(str(exc))
    print_inspected(found, errors, fmt)


@click.command("rm")
@click.option("-f", "--force", is_flag=True, help="Do not error if the network does not exist")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def rm_cmd(ctx: click.Context, force: bool, names: tuple[str, ...]) -> None:
    """Remove networks; each name is printed once it is gone."""
    from moorage.errors import NotFound

    c = _client(ctx)
    failed = False
    for name in names:
        try:
            c.request("DELETE", f"/networks/{_segment(name)}").read()
        except NotFound as exc:
            if not force:
                click.echo(f"Error response from daemon: {exc}", err=True)
                failed = True
            continue
        except MoorageError as exc:
            click.echo(f"Error response from daemon: {exc}", err=True)
            failed = True
            continue
        click.echo(name)
    if failed:
        sys.exit(1)


@click.command("prune")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@click.option("--filter", "filters", multiple=True, help='Provide filter values (e.g. "until=")')
@click.pass_context
def prune_cmd(ctx: click.Context, force: bool, filters: tuple[str, ...]) -> None:
    """Remove all unused networks."""
    if not force:
        click.confirm(
            "WARNING! This will remove all custom networks not used by at least one "
            "container.\nAre you sure you want to continue?",
            abort=True,
        )
    wanted = parse_filters(filters)
    result = _client(ctx).request("POST", "/networks/prune", params={"filters": wanted}).json()
    deleted = result.get("NetworksDeleted") or []
    if deleted:
        click.echo("Deleted Networks:")
        for name in deleted:
            click.echo(name)


@click.command("connect")
@click.option("--alias", "aliases", multiple=True, help="Add network-scoped alias")
@click.option("--ip", default=None, help="IPv4 address (e.g., 172.30.100.104)")
@click.argument("network")
@click.argument("container")
@click.pass_context
def connect_cmd(
    ctx: click.Context, aliases: tuple[str, ...], ip: str | None, network: str, container: str
) -> None:
    """Connect a container to a network."""
    endpoint: dict[str, Any] = {}
    if aliases:
        endpoint["Aliases"] = list(aliases)
    if ip:
        endpoint["IPAMConfig"] = {"IPv4Address": ip}
    body = {"Container": container, "EndpointConfig": endpoint}
    _client(ctx).request("POST", f"/networks/{_segment(network)}/connect", json_body=body).read()


@click.command("disconnect")
@click.option("-f", "--force", is_flag=True, help="Force the container to disconnect")
@click.argument("network")
@click.argument("container")
@click.pass_context
def disconnect_cmd(ctx: click.Context, force: bool, network: str, container: str) -> None:
    """Disconnect a container from a network."""
    body = {"Container": container, "Force": force}
    path = f"/networks/{_segment(network)}/disconnect"
    _client(ctx).request("POST", path, json_body=body).read()


def register(cli: click.Group) -> None:
    @cli.group("network")
    def network_group() -> None:
        """Manage networks."""

    network_group.add_command(create_cmd)
    network_group.add_command(ls_cmd)
    network_group.add_command(ls_cmd, "list")
    network_group.add_command(inspect_cmd)
    network_group.add_command(rm_cmd)
    network_group.add_command(rm_cmd, "remove")
    network_group.add_command(prune_cmd)
    network_group.add_command(connect_cmd)
    network_group.add_command(disconnect_cmd)
