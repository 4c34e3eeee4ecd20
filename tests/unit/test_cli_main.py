"""The moor command line's entry points."""

from __future__ import annotations

from click.testing import CliRunner

from moorage import __version__
from moorage.cli.main import cli


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
