"""``moor registry serve|gc``: run an OCI registry, collect its garbage.

The server is a process entry point, like ``moor daemon``: it runs in this process
rather than through the engine, so these commands import ``moorage.registry.server``
(lazily: ``moor --help`` and every other command never load it).
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from moorage.errors import InvalidArgument

DEFAULT_ROOT = "/var/lib/moorage/registry"  # as moorage.registry.server.config says
_DURATION = re.compile(r"(\d+)([smhd]?)")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """``90``, ``90s``, ``15m``, ``1h``, ``7d`` -> seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InvalidArgument(f"invalid duration: {text!r} (want e.g. 30s, 15m, 1h)")
    return int(match.group(1)) * _SECONDS[match.group(2)]


@click.group("registry")
def registry() -> None:
    """Run a registry (the OCI distribution API) and collect its garbage."""


_PATH = click.Path(dir_okay=False, exists=True, path_type=Path)


@registry.command("serve")
@click.option("--addr", default="127.0.0.1:5000", show_default=True, help="host:port to listen on")
@click.option("--root", default=DEFAULT_ROOT, show_default=True, help="storage directory")
@click.option("--htpasswd", type=_PATH, help="basic authentication: an htpasswd file (bcrypt)")
@click.option("--token-realm", help="token authentication: the token server's URL")
@click.option("--token-service", help="token authentication: this registry's service name")
@click.option("--token-key", type=_PATH, help="PEM public keys or certificates of the signer")
@click.option("--token-issuer", help="token authentication: the issuer tokens must name")
@click.option("--tls-cert", type=_PATH, help="serve HTTPS with this certificate (PEM)")
@click.option("--tls-key", type=_PATH, help="the certificate's private key (PEM)")
@click.option("--read-only", is_flag=True, help="refuse pushes and deletes (405)")
@click.option(
    "--proxy",
    metavar="URL",
    help="a pull-through cache of this registry (https://host[:port]); refuses pushes",
)
@click.option("--proxy-username", help="the upstream registry's user name")
@click.option(
    "--proxy-password",
    envvar="MOOR_REGISTRY_PROXY_PASSWORD",
    help="the upstream registry's password (or $MOOR_REGISTRY_PROXY_PASSWORD)",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def serve_cmd(
    addr: str,
    root: str,
    htpasswd: Path | None,
    token_realm: str | None,
    token_service: str | None,
    token_key: Path | None,
    token_issuer: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    read_only: bool,
    proxy: str | None,
    proxy_username: str | None,
    proxy_password: str | None,
    log_level: str,
) -> None:
    """Serve the OCI distribution API from a Moorage content store.

    Prints "listening on URL" once it accepts connections (an --addr port of 0
    picks a free one). Stops on SIGTERM or Ctrl-C. With --proxy, a pull-through
    cache: what is not stored yet is fetched from the upstream registry and kept.
    """
    import asyncio
    import logging

    from moorage.registry.server.app import serve
    from moorage.registry.server.config import ServerConfig

    logging.basicConfig(
        level=getattr(logging, log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = ServerConfig(
        root=Path(root),
        addr=addr,
        htpasswd=htpasswd,
        token_realm=token_realm,
        token_service=token_service,
        token_key=token_key,
        token_issuer=token_issuer,
        tls_cert=tls_cert,
        tls_key=tls_key,
        read_only=read_only,
        proxy=proxy,
        proxy_username=proxy_username,
        proxy_password=proxy_password,
    )
    try:
        config.check()
    except InvalidArgument as exc:
        raise click.UsageError(str(exc)) from exc

    def ready(url: str) -> None:
        click.echo(f"listening on {url}")

    asyncio.run(serve(config, ready))


@registry.command("gc")
@click.option("--root", default=DEFAULT_ROOT, show_default=True, help="storage directory")
@click.option("--dry-run", is_flag=True, help="only report what would be deleted")
@click.option(
    "--grace",
    default="1h",
    show_default=True,
    help="keep unreferenced blobs pushed this recently (a push sends its manifest last)",
)
def gc_cmd(root: str, dry_run: bool, grace: str) -> None:
    """Delete the blobs that no manifest of any repository refers to.

    Safe to run beside a live server: it never deletes what an upload or a push in
    progress is writing or relies on.
    """
    from datetime import timedelta

    from moorage.registry.server.gc import collect

    if not Path(root, "registry.db").is_file():
        raise click.UsageError(f"no registry at {root} (no registry.db)")
    report = collect(root, dry_run=dry_run, grace=timedelta(seconds=parse_duration(grace)))
    verb = "would delete" if dry_run else "deleted"
    for digest in report.removed_blobs:
        click.echo(f"{verb} blob {digest}")
    for upload in report.removed_uploads:
        click.echo(f"{verb} upload {upload}")
    click.echo(
        f"{verb} {len(report.removed_blobs)} blobs and {len(report.removed_uploads)} uploads, "
        f"{report.bytes_freed} bytes; kept {report.kept_blobs} blobs"
    )


def register(group: click.Group) -> None:
    group.add_command(registry)
