"""Registry commands: pull, push, login, logout.

The daemon does the transfers; the CLI keeps the credentials, as the docker CLI does.
``login`` has the daemon check them against the registry (``POST /auth``) and then
files them in ``$MOOR_CONFIG/config.json`` or ``~/.moor/config.json`` (mode 0600);
``pull`` and ``push`` send the registry's stored credentials in ``X-Registry-Auth``
(falling back to those of a ``docker login``).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from moorage.cli.connect import client
from moorage.errors import InvalidArgument


def _client(ctx: click.Context) -> Any:
    return client(ctx.obj.get("host") if ctx.obj else None)


def auth_header_for(image: str) -> dict[str, str]:
    """X-Registry-Auth for pulling ``image``: its registry's stored credentials."""
    from moorage.oci.reference import parse_reference

    return _auth_header(parse_reference(image).domain)


def _auth_header(domain: str) -> dict[str, str]:
    from moorage.api.registry_auth import (
        AUTH_HEADER,
        CredentialStore,
        encode_registry_auth,
        server_key,
    )

    credentials = CredentialStore().get(domain)
    return {AUTH_HEADER: encode_registry_auth(credentials, server_key(domain))}


@click.command("pull")
@click.option("--platform", default=None, help="os/arch[/variant] of the image to pull")
@click.option("-q", "--quiet", is_flag=True, help="print only the image's name")
@click.argument("name")
@click.pass_context
def pull_cmd(ctx: click.Context, platform: str | None, quiet: bool, name: str) -> None:
    """Pull an image from a registry: NAME[:TAG|@DIGEST]."""
    from moorage.cli.progress import show_stream
    from moorage.oci.reference import parse_reference

    ref = parse_reference(name)
    response = _client(ctx).request(
        "POST",
        "/images/create",
        params={
            "fromImage": ref.name,
            "tag": str(ref.digest) if ref.digest else ref.tag,
            "platform": platform,
        },
        headers=_auth_header(ref.domain),
    )
    show_stream(response.iter_json_lines(), sys.stdout, quiet=quiet)
    click.echo(str(ref._replace(tag=None) if ref.digest else ref))


@click.command("push")
@click.option("-a", "--all-tags", is_flag=True, help="push every tag of the repository")
@click.option("-q", "--quiet", is_flag=True, help="print only the pushed name")
@click.argument("name")
@click.pass_context
def push_cmd(ctx: click.Context, all_tags: bool, quiet: bool, name: str) -> None:
    """Push an image to a registry: NAME[:TAG]."""
    from moorage.cli.progress import show_stream
    from moorage.oci.reference import parse_reference

    ref = parse_reference(name, default_tag=None)
    if ref.digest is not None:
        raise InvalidArgument(f"push: cannot push a digest reference: {name}")
    if all_tags and ref.tag is not None:
        raise InvalidArgument(f"push: tag can't be used with --all-tags/-a: {name}")
    if not all_tags and ref.tag is None:
        ref = ref.with_tag("latest")
        if not quiet:
            click.echo("Using default tag: latest")
    response = _client(ctx).request(
        "POST",
        f"/images/{ref.name}/push",
        params={"tag": ref.tag or ""},
        headers=_auth_header(ref.domain),
    )
    show_stream(response.iter_json_lines(), sys.stdout, quiet=quiet)
    if quiet:
        click.echo(str(ref) if ref.tag else ref.name)


@click.command("login")
@click.option("-u", "--username", default=None)
@click.option("-p", "--password", default=None)
@click.option("--password-stdin", is_flag=True, help="read the password from stdin")
@click.argument("server", required=False, default="")
@click.pass_context
def login_cmd(
    ctx: click.Context,
    username: str | None,
    password: str | None,
    password_stdin: bool,
    server: str,
) -> None:
    """Log in to a registry (Docker Hub when SERVER is not given)."""
    from moorage.api.registry_auth import Credentials, CredentialStore, server_key

    key = server_key(server)
    if password is not None and password_stdin:
        raise InvalidArgument("login: --password and --password-stdin are mutually exclusive")
    if password_stdin:
        if not username:
            raise InvalidArgument("login: must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\r\n")
    elif password is not None:
        click.echo(
            "WARNING! Using --password via the CLI is insecure. Use --password-stdin.", err=True
        )
    interactive = sys.stdin.isatty()
    if not username:
        if not interactive:
            raise InvalidArgument("login: a username is needed (-u), and stdin is not a terminal")
        username = click.prompt("Username", err=True)
    if not password:
        if not interactive:
            raise InvalidArgument("login: a password is needed (--password-stdin)")
        password = click.prompt("Password", hide_input=True, err=True)
    answer = (
        _client(ctx)
        .request(
            "POST",
            "/auth",
            json_body={"username": username, "password": password, "serveraddress": key},
        )
        .json()
    )
    token = answer.get("IdentityToken") or "" if isinstance(answer, dict) else ""
    stored = Credentials(str(username), "" if token else str(password), token)
    CredentialStore().store(key, stored)
    click.echo(answer.get("Status", "Login Succeeded") if isinstance(answer, dict) else "")


@click.command("logout")
@click.argument("server", required=False, default="")
def logout_cmd(server: str) -> None:
    """Forget the credentials for a registry (Docker Hub when SERVER is not given)."""
    from moorage.api.registry_auth import CredentialStore, server_key

    key = server_key(server)
    if CredentialStore().erase(key):
        click.echo(f"Removing login credentials for {key}")
    else:
        click.echo(f"Not logged in to {key}")


def register(cli: click.Group) -> None:
    cli.add_command(pull_cmd)
    cli.add_command(push_cmd)
    cli.add_command(login_cmd)
    cli.add_command(logout_cmd)
