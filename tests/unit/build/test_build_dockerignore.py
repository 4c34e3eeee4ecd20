"""``.dockerignore`` reading and matching with Docker's semantics (moorage.build.dockerignore)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage.build.dockerignore import (
    PatternMatcher,
    clean_path,
    compile_pattern,
    ignore_file_for,
    load_matcher,
    read_patterns,
)
from moorage.errors import InvalidArgument


def excluded(patterns: list[str], path: str) -> bool:
    return PatternMatcher(patterns).matches(path)


# -- reading ------------------------------------------------------------------------------


def test_read_patterns() -> None:
    text = (
        "\ufeff# comment\n"
        "node_modules\n"
        "\n"
        "   \n"
        "/abs/path\n"
        "./rel/dir/\n"
        "a//b/../c\n"
        "  spaced  \n"
        " # not a comment\n"
        "!keep.md\n"
        "! /spaced/exception \n"
        "*.log\r\n"
        "/\n"
    )
    assert read_patterns(text) == [
        "node_modules",
        "abs/path",
        "rel/dir",
        "a/c",
        "spaced",
        "# not a comment",
        "!keep.md",
        "!spaced/exception",
        "*.log",
        "/",
    ]


def test_read_patterns_from_bytes() -> None:
    assert read_patterns(b"a\nb\n") == ["a", "b"]


@pytest.mark.parametrize(
    ("path", "cleaned"),
    [
        ("", "."),
        (".", "."),
        ("./a/", "a"),
        ("a//b", "a/b"),
        ("a/./b/../c", "a/c"),
        ("../a", "../a"),
        ("a/../../b", "../b"),
        ("/../a", "/a"),
        ("/", "/"),
    ],
)
def test_clean_path(path: str, cleaned: str) -> None:
    assert clean_path(path) == cleaned


# -- matching -----------------------------------------------------------------------------

# pattern, path, excluded
SINGLE = [
    ("a", "a", True),
    ("a", "a/b/c", True),
    ("a", "b/a", False),
    ("a", "ab", False),
    ("a/b", "a/b", True),
    ("a/b", "a/b/c", True),
    ("a/b", "a", False),
    ("*", "anything", True),
    ("*", "dir/file", True),
    ("*.go", "main.go", True),
    ("*.go", "cmd/main.go", False),
    ("*/*.go", "cmd/main.go", True),
    ("a*", "abc", True),
    ("a*/b", "axy/b", True),
    ("a*/b", "a/x/b", False),
    ("a?c", "abc", True),
    ("a?c", "a/c", False),
    ("a?c", "ac", False),
    ("[ab]x", "bx", True),
    ("[ab]x", "cx", False),
    ("[a-c]x", "cx", True),
    ("[^a-c]x", "dx", True),
    ("[^a-c]x", "ax", False),
    ("[\\]]x", "]x", True),
    ("[x\\-]", "-", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "axb", False),
    ("a\\?", "a?", True),
    ("a.b", "a.b", True),
    ("a.b", "axb", False),
    ("a+b(c)|d{e}$", "a+b(c)|d{e}$", True),
    ("**", "x", True),
    ("**", "x/y/z", True),
    ("**/x", "x", True),
    ("**/x", "a/b/x", True),
    ("**/x", "a/b/x/y", True),
    ("**/x", "a/bx", False),
    ("**x", "a/bx", True),
    ("**/*.md", "README.md", True),
    ("**/*.md", "docs/a/b.md", True),
    ("**/*.md", "docs/a/b.txt", False),
    ("a/**", "a/b", True),
    ("a/**", "a/b/c", True),
    ("a/**", "a", False),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/x/y/c", False),
    ("a**", "abc/d", True),
    ("a/**/*.txt", "a/x/y.txt", True),
    (".*", ".git", True),
    (".*", "dir/.git", False),
    ("**/.*", "dir/.git/config", True),
    ("/abs", "abs", False),  # a matcher takes cleaned patterns; read_patterns strips "/"
    ("dir/", "dir/file", True),
    ("./dir", "dir/file", True),
    ("日本/*", "日本/語", True),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), SINGLE)
def test_single_pattern(pattern: str, path: str, expected: bool) -> None:
    assert excluded([pattern], path) is expected


# patterns, path, excluded
MULTI = [
    (["docs", "!docs/README.md"], "docs/README.md", False),
    (["docs", "!docs/README.md"], "docs/other.md", True),
    (["docs/*", "!docs/README.md"], "docs/README.md", False),
    (["*.md", "!README.md"], "README.md", False),
    (["*.md", "!README.md"], "CHANGES.md", True),
    (["!README.md", "*.md"], "README.md", True),
    (["**", "!src"], "src/main.go", False),
    (["**", "!src", "src/gen"], "src/gen/x.go", True),
    (["**", "!src", "src/gen", "!src/gen/keep"], "src/gen/keep", False),
    (["a", "!a", "a"], "a/b", True),
    (["a/b", "!a"], "a/b/c", False),
    (["!a"], "a", False),
    ([], "a", False),
]


@pytest.mark.parametrize(("patterns", "path", "expected"), MULTI)
def test_last_match_wins(patterns: list[str], path: str, expected: bool) -> None:
    assert excluded(patterns, path) is expected


@pytest.mark.parametrize("path", ["", ".", "/", "./"])
def test_the_context_itself_is_never_excluded(path: str) -> None:
    assert not excluded(["*", "**"], path)


def test_paths_are_cleaned_before_matching() -> None:
    assert excluded(["a/b"], "./a//b/")
    assert excluded(["a/b"], "/a/b")


@pytest.mark.parametrize(
    "pattern",
    ["[", "a[", "[^", "[]a]", "[-]", "[x-]", "[-x]", "[a-b-c]", "[z-a]", "a\\", "!", "! "],
)
def test_malformed_patterns(pattern: str) -> None:
    with pytest.raises(InvalidArgument):
        PatternMatcher([pattern])


def test_blank_patterns_are_skipped() -> None:
    assert PatternMatcher(["", "  ", "a"]).patterns == (compile_pattern("a"),)


def test_pattern_kinds_follow_moby() -> None:
    kinds = {p: compile_pattern(p).kind for p in ["a.b", "a/**", "**/a", "**", "a*", "a/**/b"]}
    assert kinds == {
        "a.b": "exact",
        "a/**": "prefix",
        "**/a": "suffix",
        "**": "suffix",
        "a*": "regex",
        "a/**/b": "regex",
    }


def test_exceptions_are_noted() -> None:
    assert PatternMatcher(["a", "!b"]).has_exceptions
    assert not PatternMatcher(["a"]).has_exceptions


# -- pruning ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "directory", "walk"),
    [
        (["node_modules"], "node_modules", False),
        (["node_modules"], "src", True),
        (["docs", "!docs/README.md"], "docs", True),
        (["docs", "!docs/README.md"], "docs/api", False),
        (["**", "!src/**/*.go"], "src/pkg/x", True),
        (["**", "!src/**/*.go"], "vendor", False),
        (["**", "!**/keep"], "anything/deep", True),
        (["**", "!s*c"], "src", True),
        (["**", "!s*c"], "lib", False),
        (["build", "!build"], "build/out", True),
        (["**", "![ab]/x"], "b", True),
        (["**", "![ab]/x"], "c", False),
    ],
)
def test_may_contain_included(patterns: list[str], directory: str, walk: bool) -> None:
    assert PatternMatcher(patterns).may_contain_included(directory) is walk


# -- which file ---------------------------------------------------------------------------


def test_dockerfile_specific_ignore_file_wins(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("general\n")
    (tmp_path / "build").mkdir()
    dockerfile = tmp_path / "build" / "app.Dockerfile"
    dockerfile.write_text("FROM a\n")
    assert ignore_file_for(tmp_path, dockerfile) == tmp_path / ".dockerignore"
    (tmp_path / "build" / "app.Dockerfile.dockerignore").write_text("specific\n")
    assert (
        ignore_file_for(tmp_path, dockerfile) == tmp_path / "build" / "app.Dockerfile.dockerignore"
    )
    matcher = load_matcher(tmp_path, dockerfile)
    assert matcher.matches("specific")
    assert not matcher.matches("general")


def test_context_ignore_file(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("*.log\n!keep.log\n")
    matcher = load_matcher(tmp_path, tmp_path / "Dockerfile")
    assert matcher.matches("x.log")
    assert not matcher.matches("keep.log")


def test_no_ignore_file(tmp_path: Path) -> None:
    assert ignore_file_for(tmp_path) is None
    assert not load_matcher(tmp_path).matches("anything")


# -- properties ---------------------------------------------------------------------------

segment = st.text("abcxyz019_-.", min_size=1, max_size=6).filter(lambda s: s not in (".", ".."))
paths = st.lists(segment, min_size=1, max_size=5).map("/".join)


@given(paths, st.lists(segment, max_size=3))
def test_a_literal_pattern_matches_its_path_and_everything_below(
    path: str, below: list[str]
) -> None:
    matcher = PatternMatcher([path])
    assert matcher.matches(path)
    assert matcher.matches("/".join([path, *below]))


@given(paths, st.lists(segment, max_size=3))
def test_an_exception_after_a_pattern_includes_again(path: str, below: list[str]) -> None:
    matcher = PatternMatcher([path, "!" + path])
    assert not matcher.matches(path)
    assert not matcher.matches("/".join([path, *below]))


@given(st.lists(segment, max_size=4), segment)
def test_double_star_slash_name_matches_the_name_at_any_depth(dirs: list[str], name: str) -> None:
    assert PatternMatcher(["**/" + name]).matches("/".join([*dirs, name]))


@given(paths, st.lists(st.booleans(), min_size=1, max_size=6))
def test_the_last_matching_pattern_decides(path: str, signs: list[bool]) -> None:
    patterns = [path if exclude else "!" + path for exclude in signs]
    assert PatternMatcher(patterns).matches(path) is signs[-1]


vocabulary = st.sampled_from(["a", "b", "*", "a*", "?", "**", "[ab]"])
patterns = st.lists(
    st.tuples(st.booleans(), st.lists(vocabulary, min_size=1, max_size=3)).map(
        lambda t: ("!" if t[0] else "") + "/".join(t[1])
    ),
    max_size=5,
)
small_paths = st.lists(st.sampled_from(["a", "b", "ab", "c"]), min_size=1, max_size=4)


@given(patterns, small_paths, small_paths)
def test_pruning_never_hides_an_included_path(
    rules: list[str], directory: list[str], below: list[str]
) -> None:
    matcher = PatternMatcher(rules)
    if not matcher.may_contain_included("/".join(directory)):
        assert matcher.matches("/".join(directory + below))
