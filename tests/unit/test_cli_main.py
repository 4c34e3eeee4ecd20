"""The moor command line's entry points."""

from __future__ import annotations

import subprocess
import sys

import click
from click.testing import CliRunner

from moorage import __version__
from moorage.cli.main import MODULES_OF, LazyGroup, cli


def test_version_names_moor_and_the_spec() -> None:
    result = CliRunner().invoke(cli, ["version"])
    assert result.exit_code == 0
    assert f"moor version {__version__}" in result.output
    assert "OCI runtime spec: 1.2.0" in result.output


def test_runtime_passes_its_arguments_through() -> None:
    result = CliRunner().invoke(cli, ["runtime", "--version"])
    assert result.exit_code == 0
    assert f"moor-runtime version {__version__}" in result.output


def test_unknown_command_fails_with_a_clear_message() -> None:
    result = CliRunner().invoke(cli, ["frobnicate"])
    assert result.exit_code != 0
    assert "No such command 'frobnicate'" in result.output


def _fresh_group() -> LazyGroup:
    @click.group(cls=LazyGroup)
    def group() -> None:
        pass

    assert isinstance(group, LazyGroup)
    return group


def test_every_command_is_found_by_loading_only_its_modules() -> None:
    everything = _fresh_group()
    everything.load(
        MODULES_OF["system"]
        + ("daemon", "bootstrap", "volumes", "networks", "build", "transfer", "registry", "compose")
    )
    names = set(everything.commands)
    assert names == set(MODULES_OF)
    for name in names:
        group = _fresh_group()
        group.load(MODULES_OF[name])
        assert name in group.commands, name


def test_a_container_command_does_not_import_the_image_commands() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from moorage.cli.main import cli\n"
        "CliRunner().invoke(cli, ['run', '--help'])\n"
        "print('moorage.cli.images' in sys.modules, 'moorage.cli.containers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_help_lists_commands_of_every_module() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in ("run", "images", "volume", "daemon", "bootstrap", "system"):
        assert name in result.output
