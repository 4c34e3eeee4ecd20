"""Reading a Dockerfile into nodes: directives, continuations, comments, forms, heredocs
(moorage.build.dockerfile.parser, .directives, .arguments, .heredoc)."""

from __future__ import annotations

import pytest

from moorage.build.dockerfile.heredoc import Heredoc, chomp, heredocs_in_line, parse_heredoc
from moorage.build.dockerfile.parser import Node, ParsedFile, parse_nodes
from moorage.build.dockerfile.source import DockerfileError, Lines
from moorage.build.dockerfile.words import ExpansionError


def parse(text: str) -> ParsedFile:
    return parse_nodes(text, "Dockerfile")


def only(text: str) -> Node:
    nodes = parse(text).nodes
    assert len(nodes) == 1, nodes
    return nodes[0]


def summary(text: str) -> list[tuple[str, tuple[str, ...]]]:
    return [(n.keyword, n.args) for n in parse(text).nodes]


# -- directives -------------------------------------------------------------------------


def test_no_directives_means_backslash_escape() -> None:
    parsed = parse("FROM a\n")
    assert parsed.escape == "\\"
    assert parsed.directives.syntax is None
    assert parsed.directives.found == ()


def test_escape_directive_switches_continuation_to_backtick() -> None:
    parsed = parse("# escape=`\nFROM a\nRUN dir C:\\ `\n  /w\n")
    assert parsed.escape == "`"
    assert parsed.nodes[1].args == ("dir C:\\   /w",)
    assert parsed.nodes[1].lines == Lines(3, 4)


def test_backslash_does_not_continue_with_a_backtick_escape() -> None:
    parsed = parse("# escape=`\nFROM a\nRUN a\\\nRUN b\n")
    assert [n.args for n in parsed.nodes[1:]] == [("a\\",), ("b",)]


@pytest.mark.parametrize(
    "line", ["# escape=`", "#escape=`", "# ESCAPE = `", "  #  Escape=`  ", "# escape =`"]
)
def test_directive_spellings(line: str) -> None:
    assert parse(f"{line}\nFROM a\n").escape == "`"


@pytest.mark.parametrize(
    "text",
    [
        "# a comment\n# escape=`\nFROM a\n",
        "\n# escape=`\nFROM a\n",
        "FROM a\n# escape=`\n",
        "# unknown=1\n# escape=`\nFROM a\n",
        "#!/usr/bin/env builder\n# escape=`\nFROM a\n",
    ],
)
def test_a_directive_after_anything_else_is_a_comment(text: str) -> None:
    assert parse(text).escape == "\\"


def test_directives_are_kept_in_order_with_their_lines() -> None:
    parsed = parse("# syntax=docker/dockerfile:1 ignored\n# check=skip=all\nFROM a\n")
    found = parsed.directives.found
    assert [(d.name, d.value, d.line) for d in found] == [
        ("syntax", "docker/dockerfile:1 ignored", 1),
        ("check", "skip=all", 2),
    ]
    assert parsed.directives.syntax == "docker/dockerfile:1"
    assert parsed.directives.check.skip_all


def test_check_directive_options() -> None:
    check = parse("# check=skip=A,B;error=true\nFROM a\n").directives.check
    assert check.skip == {"A", "B"}
    assert check.error
    assert check.skips("B")
    assert not check.skips("C")


def test_check_directive_stops_at_the_first_space() -> None:
    check = parse("# check=skip=A;error=true // note\nFROM a\n").directives.check
    assert (check.skip, check.error) == ({"A"}, True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("# escape=`\n# escape=\\\nFROM a\n", r"Dockerfile:2: only one escape parser directive"),
        ("# escape=x\nFROM a\n", r"Dockerfile:1: invalid escape token 'x'"),
        ("# check=bogus\nFROM a\n", r"Dockerfile:1: invalid check option"),
        ("# check=error=maybe\nFROM a\n", r"Dockerfile:1: failed to parse check option"),
    ],
)
def test_directive_errors(text: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=message):
        parse(text)


def test_a_byte_order_mark_is_dropped() -> None:
    parsed = parse_nodes("\ufeff# escape=`\nFROM a\n".encode())
    assert parsed.escape == "`"
    assert parsed.nodes[0].keyword == "FROM"


def test_bytes_that_are_not_utf8_are_an_error() -> None:
    with pytest.raises(DockerfileError, match="not valid UTF-8"):
        parse_nodes(b"FROM \xff\n")


# -- layout -------------------------------------------------------------------------------


def test_line_ranges_cover_continuations() -> None:
    parsed = parse("\n\nFROM a\n\n# comment\nRUN one \\\n  two \\\n  three\nCMD x\n")
    assert [(n.keyword, n.lines) for n in parsed.nodes] == [
        ("FROM", Lines(3, 3)),
        ("RUN", Lines(6, 8)),
        ("CMD", Lines(9, 9)),
    ]


def test_keyword_case_is_kept_as_written() -> None:
    assert [n.keyword for n in parse("from a\nRun b\n").nodes] == ["from", "Run"]


def test_leading_blanks_of_the_first_line_are_dropped_continuations_keep_theirs() -> None:
    assert only("   RUN a \\\n    b\n").args == ("a     b",)


def test_escape_at_end_of_file_ends_the_instruction() -> None:
    assert only("RUN something \\").args == ("something",)


def test_blanks_after_the_escape_still_continue() -> None:
    assert only("RUN a \\  \t\nb\n").args == ("a b",)


def test_an_escaped_escape_does_not_continue() -> None:
    assert summary("ENV A=x\\\\\nENV B=y\n") == [
        ("ENV", ("A", "x\\\\", "=")),
        ("ENV", ("B", "y", "=")),
    ]


def test_a_line_of_just_the_escape_continues() -> None:
    assert only("RUN a\\\n\\\nb\n").args == ("ab",)


def test_comment_lines_inside_a_continuation_are_dropped() -> None:
    node = only("RUN a \\\n# one\n    # two, indented\n  b\n")
    assert node.args == ("a   b",)
    assert node.lines == Lines(1, 4)


def test_blank_lines_inside_a_continuation_are_skipped_and_recorded() -> None:
    parsed = parse("FROM a\nRUN a \\\n\n   \n  b\nRUN c \\\n  d\n")
    assert parsed.nodes[1].args == ("a   b",)
    assert parsed.empty_continuations == (Lines(2, 5),)


def test_a_hash_inside_an_instruction_is_not_a_comment() -> None:
    assert only("RUN echo a # not a comment\n").args == ("echo a # not a comment",)


def test_comments_just_above_an_instruction_are_kept_with_it() -> None:
    nodes = parse("# check=skip=all\n# about a\nFROM a\n#\n# about b\n\nRUN b\nRUN c\n").nodes
    assert [n.comments for n in nodes] == [("about a",), ("about b",), ()]


def test_crlf_line_endings() -> None:
    assert summary("FROM a\r\nRUN b \\\r\n  c\r\n") == [("FROM", ("a",)), ("RUN", ("b   c",))]


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "# escape=`\n"])
def test_a_file_without_instructions_is_an_error(text: str) -> None:
    with pytest.raises(DockerfileError, match=r"^Dockerfile: file with no instructions$"):
        parse(text)


# -- forms ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "args", "is_json"),
    [
        ('CMD ["a", "b c"]', ("a", "b c"), True),
        ("CMD []", (), True),
        ('CMD [ "a" ]  ', ("a",), True),
        ('CMD\t[\t"a",\t"b"\t]', ("a", "b"), True),
        ('CMD ["\\u00e9\\n"]', ("é\n",), True),
        ("CMD echo hi", ("echo hi",), False),
        ("CMD ['single']", ("['single']",), False),
        ('CMD ["unterminated"', ('["unterminated"',), False),
        ('CMD ["a"] trailing', ('["a"] trailing',), False),
        ("CMD [NaN]", ("[NaN]",), False),
        ('CMD \'["in", "a string"]\'', ('\'["in", "a string"]\'',), False),
        ("CMD", (), False),
        ('ENTRYPOINT ["/bin/app"]', ("/bin/app",), True),
        ('SHELL ["bash", "-c"]', ("bash", "-c"), True),
        ('COPY ["a b", "/c d/"]', ("a b", "/c d/"), True),
        ("COPY a  b\t/c/", ("a", "b", "/c/"), False),
        ('VOLUME ["/a", "/b"]', ("/a", "/b"), True),
        ("VOLUME /a /b", ("/a", "/b"), False),
        ("EXPOSE 80  443/tcp", ("80", "443/tcp"), False),
        ("USER app:app", ("app:app",), False),
        ("WORKDIR /a b", ("/a b",), False),
        ("ARG a=1 b 'c d'=\"e f\"", ("a=1", "b", "'c d'=\"e f\""), False),
        ('HEALTHCHECK CMD ["curl", "x"]', ("CMD", "curl", "x"), True),
        ("HEALTHCHECK CMD curl -f x", ("CMD", "curl -f x"), False),
        ("HEALTHCHECK NONE", ("NONE",), False),
    ],
)
def test_argument_forms(text: str, args: tuple[str, ...], is_json: bool) -> None:
    node = only(text)
    assert node.args == args
    assert node.json is is_json


def test_a_json_array_of_other_things_is_an_error() -> None:
    with pytest.raises(DockerfileError, match="Dockerfile:2: when using JSON array syntax"):
        parse('FROM a\nCMD ["a", ["nested"]]\n')


@pytest.mark.parametrize(
    ("text", "args"),
    [
        ("ENV A=1", ("A", "1", "=")),
        ('ENV A=1 B=\'x y\' C="z\\" w"', ("A", "1", "=", "B", "'x y'", "=", "C", '"z\\" w"', "=")),
        ("ENV A x y  z", ("A", "x y  z", "")),
        ("ENV A=", ("A", "", "=")),
        ("LABEL a.b=c", ("a.b", "c", "=")),
        ("LABEL maintainer Someone <a@b>", ("maintainer", "Someone <a@b>", "")),
        ("ENV A=a\\ b", ("A", "a\\ b", "=")),
    ],
)
def test_env_and_label_forms(text: str, args: tuple[str, ...]) -> None:
    assert only(text).args == args


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ENV PATH", "ENV must have two arguments"),
        ("LABEL a=1 b", 'can\'t find = in "b"'),
    ],
)
def test_env_and_label_errors(text: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=message):
        parse(text)


@pytest.mark.parametrize(
    ("text", "flags", "args"),
    [
        ("COPY --from=a --chown=1:1 x /y", ("--from=a", "--chown=1:1"), ("x", "/y")),
        ("COPY --link x /y", ("--link",), ("x", "/y")),
        ("COPY -- --x /y", (), ("--x", "/y")),
        ("COPY --a=1 -- --x /y", ("--a=1",), ("--x", "/y")),
        ('COPY --chown="a b" x /y', ("--chown=a b",), ("x", "/y")),
        ("COPY --exclude='*.md' x /y", ("--exclude=*.md",), ("x", "/y")),
        ("COPY x --from=a /y", (), ("x", "--from=a", "/y")),
        ("COPY -x /y", (), ("-x", "/y")),
        ('CMD --flag ["a"]', ("--flag",), ("a",)),
        ("RUN --mount=type=cache,target=/c make", ("--mount=type=cache,target=/c",), ("make",)),
    ],
)
def test_flags_are_the_leading_double_dash_words(
    text: str, flags: tuple[str, ...], args: tuple[str, ...]
) -> None:
    node = only(text)
    assert (node.flags, node.args) == (flags, args)


def test_onbuild_holds_its_instruction() -> None:
    node = only("ONBUILD RUN --network=none make")
    assert node.child is not None
    assert (node.child.keyword, node.child.flags, node.child.args) == (
        "RUN",
        ("--network=none",),
        ("make",),
    )


def test_unknown_keywords_parse_and_are_rejected_later() -> None:
    assert only("RUNN x").args == ()


# -- heredocs ---------------------------------------------------------------------------


def test_run_heredoc_body_and_lines() -> None:
    node = only("RUN <<EOF\necho a\n  echo b\nEOF\n")
    assert node.args == ("<<EOF",)
    assert node.heredocs == (Heredoc("EOF", "echo a\n  echo b\n"),)
    assert node.lines == Lines(1, 4)


def test_instructions_after_a_heredoc_keep_their_lines() -> None:
    parsed = parse("FROM a\nRUN <<EOF\nx\nEOF\nRUN y\n")
    assert [n.lines for n in parsed.nodes] == [Lines(1, 1), Lines(2, 4), Lines(5, 5)]


def test_dash_heredoc_strips_tabs_from_the_terminator() -> None:
    node = only("RUN <<-EOF\n\tindented\n\t\tEOF\n")
    assert node.heredocs[0].content == "\tindented\n"
    assert node.heredocs[0].chomp
    assert node.heredocs[0].text == "indented\n"


def test_plain_heredoc_terminator_must_match_exactly() -> None:
    node = only("RUN <<EOF\n\tEOF\n EOF\nEOF\n")
    assert node.heredocs[0].content == "\tEOF\n EOF\n"


@pytest.mark.parametrize(
    ("marker", "name", "expand"),
    [
        ("<<EOF", "EOF", True),
        ("<<'EOF'", "EOF", False),
        ('<<"EOF"', "EOF", False),
        ('<<E"O"F', "EOF", False),
        ("<<-'EOF'", "EOF", False),
        ("<< EOF", "EOF", True),
        ("<<end.txt", "end.txt", True),
        ("<<E\\'F", "E'F", True),
    ],
)
def test_heredoc_markers(marker: str, name: str, expand: bool) -> None:
    node = only(f"RUN cat {marker}\nbody\n{name}\n")
    assert [(h.name, h.content, h.expand) for h in node.heredocs] == [(name, "body\n", expand)]


def test_several_heredocs_on_one_line_read_in_order() -> None:
    node = only("COPY <<A <<B /dest/\none\nB\nA\ntwo\nB\n")
    assert [(h.name, h.content) for h in node.heredocs] == [("A", "one\nB\n"), ("B", "two\n")]


def test_heredoc_with_file_descriptor() -> None:
    assert only("RUN 3<<EOF cat /dev/fd/3\nx\nEOF\n").heredocs[0].fd == 3


def test_heredoc_lines_keep_crlf() -> None:
    assert only("RUN <<EOF\r\nx\r\nEOF\r\n").heredocs[0].content == "x\r\n"


def test_quoted_heredoc_markers_are_not_heredocs() -> None:
    assert only("RUN echo '<<EOF' \"<<X\"").heredocs == ()


def test_json_form_has_no_heredocs() -> None:
    parsed = parse('RUN ["cat", "<<EOF"]\nEOF\n')
    assert [n.keyword for n in parsed.nodes] == ["RUN", "EOF"]
    assert parsed.nodes[0].heredocs == ()


def test_other_instructions_have_no_heredocs() -> None:
    assert [n.keyword for n in parse("USER <<EOF\nEOF\n").nodes] == ["USER", "EOF"]


def test_onbuild_run_heredoc() -> None:
    node = only("ONBUILD RUN <<EOF\nmake\nEOF\n")
    assert node.heredocs == (Heredoc("EOF", "make\n"),)
    assert node.child is not None
    assert node.child.heredocs == node.heredocs


def test_heredoc_continuation_line_before_the_body() -> None:
    node = only("RUN --mount=type=cache,target=/c \\\n  <<EOF\nbody\nEOF\n")
    assert node.heredocs == (Heredoc("EOF", "body\n"),)
    assert node.lines == Lines(1, 4)


def test_unterminated_heredoc_is_an_error_at_the_instruction() -> None:
    with pytest.raises(DockerfileError, match="Dockerfile:2: unterminated heredoc EOF"):
        parse("FROM a\nRUN <<EOF\nnever ends\n")


def test_parse_heredoc_is_none_for_other_words() -> None:
    for word in ("", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh", "x<<EOF"):
        assert parse_heredoc(word) is None, word


def test_parse_heredoc_rejects_an_open_quote() -> None:
    with pytest.raises(ExpansionError):
        parse_heredoc("<<'EOF")


def test_heredocs_in_line_ignore_lines_with_open_quotes() -> None:
    assert heredocs_in_line("RUN echo 'oops <<EOF") == ()


def test_chomp_removes_leading_tabs_of_every_line() -> None:
    assert chomp("\t\ta\n\tb\n c\n") == "a\nb\n c\n"
