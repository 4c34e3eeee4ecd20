"""``moor registry``: its options, and that it loads the server only to run it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from moorage.cli.main import cli
from moorage.cli.registry import parse_duration
from moorage.errors import InvalidArgument


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0), ("90", 90), ("90s", 90), ("15m", 900), ("1h", 3600), ("7d", 604800)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1w", "-1h", "1.5h", "h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid duration"):
        parse_duration(text)


def test_help_names_both_commands() -> None:
    result = CliRunner().invoke(cli, ["registry", "--help"])
    assert result.exit_code == 0
    assert "serve" in result.output
    assert "gc" in result.output


def test_serve_help_does_not_load_the_server() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from moorage.cli.main import cli\n"
        "CliRunner().invoke(cli, ['registry', 'serve', '--help'])\n"
        "loaded = any(m.startswith('moorage.registry') for m in sys.modules)\n"
        "print(loaded, 'aiohttp' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_a_bad_address_is_a_usage_error() -> None:
    result = CliRunner().invoke(
        cli, ["registry", "serve", "--addr", "nowhere", "--root", "/nonexistent"]
    )
    assert result.exit_code == 2
    assert "invalid address" in result.output
