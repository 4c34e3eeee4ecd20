"""Interpolation in compose files: ${VAR}, defaults, required variables, $$ (and .env)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage.compose.envfile import parse_env_text
from moorage.compose.interpolate import InterpolationError, interpolate, interpolate_tree

NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
# Words that need no escaping inside ${...}: no $, no braces.
WORDS = st.text(
    st.characters(blacklist_characters="${}", blacklist_categories=("Cs",)), max_size=20
)


def lookup(env: dict[str, str]):  # type: ignore[no-untyped-def]
    return env.get


@given(st.text(st.characters(blacklist_categories=("Cs",))))
def test_escaping_every_dollar_gives_the_text_back(text: str) -> None:
    assert interpolate(text.replace("$", "$$"), lookup({})) == text


@given(st.text(st.characters(blacklist_characters="$", blacklist_categories=("Cs",))))
def test_text_without_a_dollar_is_unchanged(text: str) -> None:
    assert interpolate(text, lookup({})) == text


@given(NAMES, WORDS, WORDS)
def test_colon_dash_default_applies_when_unset_or_empty(
    name: str, default: str, value: str
) -> None:
    template = f"${{{name}:-{default}}}"
    assert interpolate(template, lookup({})) == default
    assert interpolate(template, lookup({name: ""})) == default
    assert interpolate(template, lookup({name: value})) == (value or default)


@given(NAMES, WORDS)
def test_dash_default_applies_only_when_unset(name: str, default: str) -> None:
    template = f"${{{name}-{default}}}"
    assert interpolate(template, lookup({})) == default
    assert interpolate(template, lookup({name: ""})) == ""


@given(NAMES, WORDS, WORDS)
def test_plus_gives_the_alternative_when_set(name: str, other: str, value: str) -> None:
    assert interpolate(f"${{{name}:+{other}}}", lookup({name: value})) == (other if value else "")
    assert interpolate(f"${{{name}+{other}}}", lookup({name: value})) == other
    assert interpolate(f"${{{name}+{other}}}", lookup({})) == ""


def test_plain_and_braced_variables() -> None:
    env = lookup({"A": "1", "B_2": "two"})
    assert interpolate("$A-${B_2}/$$A", env) == "1-two/$A"


def test_defaults_nest() -> None:
    assert interpolate("${A:-${B:-deep}}", lookup({})) == "deep"
    assert interpolate("${A:-${B}}", lookup({"B": "b"})) == "b"


def test_an_unset_variable_is_blank_and_reported() -> None:
    missing: list[str] = []
    assert interpolate("x${NOPE}y", lookup({}), missing.append) == "xy"
    assert missing == ["NOPE"]


@pytest.mark.parametrize("template", ["${NEED:?set NEED}", "${NEED?set NEED}"])
def test_a_required_variable_without_a_value_is_an_error(template: str) -> None:
    with pytest.raises(
        InterpolationError, match="required variable NEED is missing a value: set NEED"
    ):
        interpolate(template, lookup({}))


def test_colon_question_refuses_an_empty_value_too() -> None:
    with pytest.raises(InterpolationError):
        interpolate("${NEED:?}", lookup({"NEED": ""}))
    assert interpolate("${NEED?}", lookup({"NEED": ""})) == ""


@pytest.mark.parametrize("bad", ["$", "a $ b", "${", "${}", "${1A}", "${A!x}", "${A"])
def test_a_lone_or_malformed_dollar_is_an_error(bad: str) -> None:
    with pytest.raises(InterpolationError, match="invalid interpolation format"):
        interpolate(bad, lookup({}))


def test_tree_interpolation_keeps_keys_and_names_the_path() -> None:
    tree = {"services": {"web": {"environment": {"$KEY": "${V}", "L": ["a", "${W:?no W}"]}}}}
    with pytest.raises(InterpolationError) as info:
        interpolate_tree(tree, lookup({"V": "v"}))
    assert info.value.path == "services.web.environment.L[1]"
    out = interpolate_tree(tree, lookup({"V": "v", "W": "w"}))
    assert out == {"services": {"web": {"environment": {"$KEY": "v", "L": ["a", "w"]}}}}


def test_env_file_syntax() -> None:
    text = (
        "# a comment\n"
        "\n"
        "export A=1\n"
        "B = two words  # comment\n"
        "C='${A} literal'\n"
        'D="line\\nnext ${A}"\n'
        "E=${A}${B:-x}\n"
        "F\n"
        'G="multi\n'
        'line"\n'
    )
    env = parse_env_text(text, lookup({"F": "from-env"}))
    assert env == {
        "A": "1",
        "B": "two words",
        "C": "${A} literal",
        "D": "line\nnext 1",
        "E": "1two words",
        "F": "from-env",
        "G": "multi\nline",
    }
