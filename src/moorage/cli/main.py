"""``moor``: the user's command line.

Command modules are imported lazily: ``moor run`` imports the container commands
and not the image, volume or daemon ones (each costs milliseconds that every call
would pay). :data:`MODULES_OF` says which modules define a top-level command; a
name it does not know loads them all, so that click's "no such command" and
``--help`` see everything.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable
from typing import Any

import click

from moorage import __version__
from moorage.errors import MoorageError

# Registration order matters: ``containers`` extends the ``system`` group of ``images``.
_ORDER = (
    "daemon",
    "bootstrap",
    "images",
    "containers",
    "volumes",
    "networks",
    "build",
    "transfer",
    "registry",
    "compose",
)
_CONTAINERS = (
    "attach commit container cp create diff events exec inspect kill logs pause port ps "
    "rename restart rm run start stats stop top unpause update wait"
)
_IMAGES = ("history", "image", "images", "import", "load", "rmi", "save", "tag")
MODULES_OF: dict[str, tuple[str, ...]] = {
    **{name: ("containers",) for name in _CONTAINERS.split()},
    **{name: ("images",) for name in _IMAGES},
    "system": ("images", "containers"),
    "volume": ("volumes",),
    "network": ("networks",),
    "daemon": ("daemon",),
    "bootstrap": ("bootstrap",),
    "build": ("build",),
    "builder": ("build",),
    **{name: ("transfer",) for name in ("pull", "push", "login", "logout")},
    "registry": ("registry",),
    "compose": ("compose",),
}


class LazyGroup(click.Group):
    """A group whose commands are registered by their modules on first use."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded: set[str] = set()

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            self.load(MODULES_OF.get(cmd_name, _ORDER))
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.load(_ORDER)
        return super().list_commands(ctx)

    def load(self, modules: Iterable[str]) -> None:
        for name in sorted(set(modules) - self._loaded, key=_ORDER.index):
            self._loaded.add(name)
            _REGISTER[name](self)


def _register_daemon(group: click.Group) -> None:
    from moorage.cli.daemon import daemon

    group.add_command(daemon)


def _register_bootstrap(group: click.Group) -> None:
    from moorage.cli.bootstrap import bootstrap_cmd

    group.add_command(bootstrap_cmd)


def _register_module(module: str) -> Callable[[click.Group], None]:
    def register(group: click.Group) -> None:
        importlib.import_module(f"moorage.cli.{module}").register(group)

    return register


_REGISTER: dict[str, Callable[[click.Group], None]] = {
    "daemon": _register_daemon,
    "bootstrap": _register_bootstrap,
    "images": _register_module("images"),
    "containers": _register_module("containers"),
    "volumes": _register_module("volumes"),
    "networks": _register_module("networks"),
    "build": _register_module("build"),
    "transfer": _register_module("transfer"),
    "registry": _register_module("registry"),
    "compose": _register_module("compose"),
}


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


def main() -> None:
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
