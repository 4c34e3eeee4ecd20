"""``moor daemon``: run the engine in the foreground."""

from __future__ import annotations

import click

from moorage.api.hosts import DEFAULT_EXEC_ROOT, DEFAULT_HOST, DEFAULT_ROOT


@click.command()
@click.option("-H", "--host", default=DEFAULT_HOST, show_default=True, help="socket to listen on")
@click.option("--root", default=DEFAULT_ROOT, show_default=True, help="state directory")
@click.option("--exec-root", default=DEFAULT_EXEC_ROOT, show_default=True, help="runtime state")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.option(
    "--cgroup-parent",
    default="/moorage",
    show_default=True,
    help="cgroup under which each container gets <parent>/<id>",
)
@click.option(
    "-b",
    "--bridge",
    default="moor0",
    show_default=True,
    help="the default bridge network's interface (its own per daemon on one host)",
)
@click.option("--bip", default=None, help="the default bridge's address and prefix (CIDR)")
@click.option(
    "--dns",
    multiple=True,
    help="DNS server for containers and the embedded DNS (default: the host's resolvers)",
)
@click.option(
    "--insecure-registry",
    "insecure_registries",
    multiple=True,
    metavar="HOST[:PORT]",
    help="a registry to reach without TLS verification or over plain HTTP (repeatable)",
)
def daemon(
    host: str,
    root: str,
    exec_root: str,
    log_level: str,
    cgroup_parent: str,
    bridge: str,
    bip: str | None,
    dns: tuple[str, ...],
    insecure_registries: tuple[str, ...],
) -> None:
    """Run the Moorage engine: the Docker Engine API on a unix socket."""
    import asyncio
    import logging

    from moorage.api.docker.server import EngineConfig, serve

    logging.basicConfig(
        level=getattr(logging, log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = EngineConfig(
        root=root,
        exec_root=exec_root,
        host=host,
        cgroup_parent=cgroup_parent,
        bridge=bridge,
        bip=bip,
        dns=dns,
        insecure_registries=insecure_registries,
    )
    asyncio.run(serve(config))
