"""``moor``: the user's command line.

Today it reports versions and reaches the OCI runtime; the engine's commands
(run, ps, images, build...) arrive with the daemon. Command modules are imported
lazily so that ``moor --help`` stays fast.
"""

from __future__ import annotations

import sys

import click

from moorage import __version__
from moorage.errors import MoorageError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-v", "--version", prog_name="moor")
@click.option("-H", "--host", envvar="MOOR_HOST", default=None, help="daemon socket (unix://PATH)")
@click.pass_context
def cli(ctx: click.Context, host: str | None) -> None:
    """Moorage: containers, images and clusters."""
    ctx.obj = {"host": host}


@cli.command()
def version() -> None:
    """Show the versions of moor and of the pieces it uses."""
    from moorage.oci.version import OCI_VERSION

    click.echo(f"moor version {__version__}")
    click.echo(f"OCI runtime spec: {OCI_VERSION}")
    click.echo(f"python: {sys.version.split()[0]}")


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def runtime(args: tuple[str, ...]) -> None:
    """Run a moor-runtime (OCI runtime) command: moor runtime run --bundle DIR ID."""
    from moorage.runtime.cli import main as runtime_main

    runtime_main(list(args))


def _register() -> None:
    from moorage.cli import containers, images, volumes
    from moorage.cli.bootstrap import bootstrap_cmd
    from moorage.cli.daemon import daemon

    cli.add_command(daemon)
    cli.add_command(bootstrap_cmd)
    images.register(cli)
    containers.register(cli)  # after images: it extends the system group
    volumes.register(cli)


def main() -> None:
    _register()
    try:
        cli(prog_name="moor", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except MoorageError as exc:
        click.echo(f"moor: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
