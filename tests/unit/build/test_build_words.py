"""Shell-word lexing and variable expansion (moorage.build.dockerfile.words)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage.build.dockerfile.words import Expander, ExpansionError, ShellLexer
from moorage.errors import InvalidArgument

ENV = {"HOME": "/home/me", "EMPTY": "", "SP": "a  b", "GREEK": "αβγ", "FILE": "dir/app.tar.gz"}

# word, expected expansion with ENV
EXPANDS = [
    ("plain", "plain"),
    ("", ""),
    ("$HOME", "/home/me"),
    ("${HOME}", "/home/me"),
    ("x${HOME}y", "x/home/mey"),
    ("$HOME.d", "/home/me.d"),
    ("$HOMEx", ""),
    ("$NOPE", ""),
    ("a$NOPE-b", "a-b"),
    ("$", "$"),
    ("a$", "a$"),
    ("$.", "$."),
    ("$/x", "$/x"),
    ("cost: 5$", "cost: 5$"),
    # quotes
    ("'$HOME'", "$HOME"),
    ('"$HOME"', "/home/me"),
    ("\"'$HOME'\"", "'/home/me'"),
    ("'\"x\"'", '"x"'),
    ('a"b c"d', "ab cd"),
    ("it''s", "its"),
    ('""', ""),
    ("''", ""),
    # escapes outside quotes
    ("\\$HOME", "$HOME"),
    ("\\\\$HOME", "\\/home/me"),
    ("a\\ b", "a b"),
    ("a\\tb", "atb"),
    ("\\'x", "'x"),
    ("end\\", "end"),
    ("end\\\\", "end\\"),
    # escapes inside double quotes: only " $ and the escape itself
    ('"a\\"b"', 'a"b'),
    ('"\\$HOME"', "$HOME"),
    ('"a\\\\b"', "a\\b"),
    ('"a\\tb"', "a\\tb"),
    # escapes inside single quotes are literal
    ("'a\\tb'", "a\\tb"),
    ("'a\\'", "a\\"),
    # the four modifiers
    ("${NOPE:-dflt}", "dflt"),
    ("${EMPTY:-dflt}", "dflt"),
    ("${HOME:-dflt}", "/home/me"),
    ("${NOPE-dflt}", "dflt"),
    ("${EMPTY-dflt}", ""),
    ("${HOME-dflt}", "/home/me"),
    ("${NOPE:+alt}", ""),
    ("${EMPTY:+alt}", ""),
    ("${HOME:+alt}", "alt"),
    ("${NOPE+alt}", ""),
    ("${EMPTY+alt}", "alt"),
    ("${HOME+alt}", "alt"),
    ("${HOME:?must be set}", "/home/me"),
    ("${EMPTY?}", ""),
    # nesting and expansion inside the modifier word
    ("${NOPE:-$HOME}", "/home/me"),
    ("${NOPE:-${EMPTY:-deep}}", "deep"),
    ("${HOME:+[${GREEK}]}", "[αβγ]"),
    ("${NOPE:-a b}", "a b"),
    ("${NOPE:-\\$HOME}", "$HOME"),
    ("${NOPE:-'q'}", "q"),
    ("${HOME:+$HOME:}", "/home/me:"),
    ("${NOPE:-x}}", "x}"),
    ("${NOPE:-a {b}", "a {b"),
    # positional and special parameters are never set
    ("$1x", "x"),
    ("${12}", ""),
    ("$007y", "y"),
    ("${3:-three}", "three"),
    ("$@", ""),
    ("$$", ""),
    ("$#x", "x"),
    ("${?:-q}", "q"),
    ("${!:+bang}", ""),
    # unicode
    ("$GREEK-δ", "αβγ-δ"),
    ("'日本'語", "日本語"),
    # BuildKit's pattern modifiers
    ("${FILE#*.}", "tar.gz"),
    ("${FILE##*.}", "gz"),
    ("${FILE%.*}", "dir/app.tar"),
    ("${FILE%%.*}", "dir/app"),
    ("${FILE#dir/}", "app.tar.gz"),
    ("${FILE#nomatch}", "dir/app.tar.gz"),
    ("${FILE/a/A}", "dir/App.tar.gz"),
    ("${FILE//a/A}", "dir/App.tAr.gz"),
    ("${FILE//\\//:}", "dir:app.tar.gz"),
    ("${FILE/?pp/X}", "dir/X.tar.gz"),
    ("${NOPE#x}", ""),
    # heredoc markers pass through
    ("<<EOF", "<<EOF"),
    ("a<b", "a<b"),
]


@pytest.mark.parametrize(("word", "expected"), EXPANDS)
def test_expand(word: str, expected: str) -> None:
    assert ShellLexer().expand(word, ENV).value == expected


BAD = [
    "'open",
    '"open',
    '"open\\"',
    "${",
    "${}",
    "x${}y",
    "${:}",
    "${:-x}",
    "${{x}",
    "${HOME",
    "${HOME:-x",
    "${.}",
    "${HOME=x}",
    "${HOME:=x}",
    "${HOME:x}",
    "${HOME:#x}",
    "${HOME:%x}",
    "${NOPE?}",
    "${NOPE:?}",
    "${EMPTY:?}",
    "${HOME/x}",
    "${HOME//x}",
    "${HOME#\\x}",
    "${NOPE:-${HOME}",
]


@pytest.mark.parametrize("word", BAD)
def test_expand_errors(word: str) -> None:
    with pytest.raises(ExpansionError):
        ShellLexer().expand(word, ENV)


def test_expansion_error_is_invalid_argument_and_names_the_word() -> None:
    with pytest.raises(InvalidArgument, match=r'failed to process "\$\{x": syntax error'):
        ShellLexer().expand("${x", {})


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("${NOPE?}", "NOPE: is not allowed to be unset"),
        ("${NOPE:?}", "NOPE: is not allowed to be unset"),
        ("${EMPTY:?}", "EMPTY: is not allowed to be empty"),
        ("${NOPE:?set NOPE in $HOME}", "NOPE: set NOPE in /home/me"),
        ("${EMPTY:?give it a value}", "EMPTY: give it a value"),
    ],
)
def test_question_mark_error_messages(word: str, message: str) -> None:
    with pytest.raises(ExpansionError, match=message):
        ShellLexer().expand(word, ENV)


def test_expansion_reports_used_and_undefined_names() -> None:
    result = ShellLexer().expand("$HOME ${NOPE:-x} ${EMPTY} ${ALSO+y}", ENV)
    assert result.used == {"HOME", "EMPTY"}
    assert result.undefined == {"NOPE", "ALSO"}


def test_names_inside_modifier_words_are_reported() -> None:
    result = ShellLexer().expand("${NOPE:-$OTHER}", ENV)
    assert result.undefined == {"NOPE", "OTHER"}


def test_single_quoted_names_are_not_looked_up() -> None:
    assert ShellLexer().expand("'$A' \\$B", {}).undefined == frozenset()


def test_backtick_escape() -> None:
    lexer = ShellLexer("`")
    assert lexer.expand("C:\\dir\\`$HOME", ENV).value == "C:\\dir\\$HOME"
    assert lexer.expand('"a`"b"', ENV).value == 'a"b'
    assert lexer.expand("a``b", ENV).value == "a`b"


def test_escape_must_be_one_character() -> None:
    with pytest.raises(InvalidArgument):
        ShellLexer("ab")


# word, expected words with ENV
SPLITS = [
    ("a b  c", ["a", "b", "c"]),
    ("  lead trail  ", ["lead", "trail"]),
    ('"a b" c', ["a b", "c"]),
    ("a\\ b c", ["a b", "c"]),
    ("$SP", ["a", "b"]),
    ('"$SP"', ["a  b"]),
    ("x${SP}y", ["xa", "by"]),
    ("x'$SP'y", ["x$SPy"]),
    ("$NOPE", []),
    ('""', []),
    ('"" x', ["x"]),
    ("<< EOF done", ["<< EOF", "done"]),
    ("8080 8443/tcp", ["8080", "8443/tcp"]),
]


@pytest.mark.parametrize(("word", "expected"), SPLITS)
def test_split(word: str, expected: list[str]) -> None:
    assert ShellLexer().split(word, ENV) == expected


def test_split_nested_default_keeps_the_word_before_it() -> None:
    assert ShellLexer().split("pre${NOPE:-mid}post", {}) == ["premidpost"]


def test_raw_quotes_keep_the_quote_characters() -> None:
    lexer = ShellLexer(raw_quotes=True)
    assert lexer.expand("a'b'\"$HOME\"", ENV).value == "a'b'\"/home/me\""


def test_raw_escapes_keep_the_escape_character() -> None:
    assert ShellLexer(raw_escapes=True).expand("a\\ b", {}).value == "a\\ b"


def test_skip_unset_leaves_references_as_written() -> None:
    lexer = ShellLexer(skip_unset=True)
    assert lexer.expand("$NOPE ${NOPE} ${NOPE:-x} $HOME", ENV).value == (
        "$NOPE ${NOPE} ${NOPE:-x} /home/me"
    )


def test_skip_quotes_treats_quotes_as_text() -> None:
    lexer = ShellLexer(skip_quotes=True)
    assert lexer.expand("say 'hi' to \"$HOME\"", ENV).value == "say 'hi' to \"/home/me\""


def test_expander_remembers_every_lookup() -> None:
    ex = Expander({"A": "1"})
    assert ex.word("$A$B") == "1"
    assert ex.words("$A $C") == ["1"]
    assert ex.heredoc("'$A' \"$D\"") == "'1' \"\""
    assert ex.used == {"A"}
    assert ex.undefined == {"B", "C", "D"}


def test_expander_heredoc_uses_backslash_even_with_backtick_escape() -> None:
    assert Expander({"A": "1"}, escape="`").heredoc("\\$A `$A") == "$A `1"


# -- properties ---------------------------------------------------------------------------

_SPECIAL = "$'\"\\"
plain_text = st.text(
    st.characters(blacklist_characters=_SPECIAL, blacklist_categories=("Cs",)), max_size=40
)
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@given(plain_text)
def test_a_word_without_dollar_quotes_or_escapes_expands_to_itself(text: str) -> None:
    assert ShellLexer().expand(text, ENV).value == text


@given(st.text(st.characters(blacklist_characters="'", blacklist_categories=("Cs",))))
def test_single_quoting_anything_gives_it_back(text: str) -> None:
    assert ShellLexer().expand(f"'{text}'", ENV).value == text


@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_double_quoting_with_escapes_gives_it_back(text: str) -> None:
    escaped = "".join("\\" + ch if ch in '"$\\' else ch for ch in text)
    assert ShellLexer().expand(f'"{escaped}"', {}).value == text


@given(names, values)
def test_a_set_variable_expands_to_its_value(name: str, value: str) -> None:
    env = {name: value}
    lexer = ShellLexer()
    assert lexer.expand("${" + name + "}", env).value == value
    assert lexer.expand("${" + name + "-unused}", env).value == value
    assert lexer.expand("${" + name + "+alt}", env).value == "alt"


@given(names, st.text(string.ascii_letters, max_size=10), st.booleans())
def test_colon_modifiers_treat_empty_like_unset(name: str, word: str, empty: bool) -> None:
    env = {name: ""} if empty else {}
    lexer = ShellLexer()
    assert lexer.expand("${" + name + ":-" + word + "}", env).value == word
    assert lexer.expand("${" + name + ":+" + word + "}", env).value == ""


@given(st.lists(st.text(string.ascii_letters + string.digits + "./-_", min_size=1), max_size=6))
def test_splitting_words_joined_by_blanks_gives_them_back(words: list[str]) -> None:
    assert ShellLexer().split("  ".join(words), {}) == words
