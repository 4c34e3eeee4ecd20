"""Typed instructions: what each accepts, its errors, and its build-time expansion
(moorage.build.dockerfile.convert, .instructions, .flags, .durations)."""

from __future__ import annotations

from typing import TypeVar

import pytest

from moorage.build.dockerfile import instructions as i
from moorage.build.dockerfile.durations import DurationError, parse_duration
from moorage.build.dockerfile.flags import BOOL, STRING, STRINGS, FlagError, Flags
from moorage.build.dockerfile.heredoc import Heredoc
from moorage.build.dockerfile.mounts import Mount
from moorage.build.dockerfile.source import DockerfileError, Lines
from moorage.build.dockerfile.stages import parse_dockerfile
from moorage.errors import InvalidArgument
from moorage.oci.image import Healthcheck as HealthcheckConfig

T = TypeVar("T", bound=i.Instruction)
SEC = 1_000_000_000


def one(line: str, kind: type[T]) -> T:
    """The single instruction of a stage that starts ``FROM scratch``."""
    df = parse_dockerfile(f"FROM scratch\n{line}\n")
    (instruction,) = df.stages[0].instructions
    assert isinstance(instruction, kind)
    return instruction


def error(text: str) -> str:
    with pytest.raises(DockerfileError) as caught:
        parse_dockerfile(text)
    return str(caught.value)


def expanded(instruction: T, env: dict[str, str]) -> T:
    result = i.expand(instruction, env).instruction
    assert isinstance(result, type(instruction))
    return result


# -- unknown instructions and flags ----------------------------------------------------


def test_unknown_instruction_names_the_file_line_and_keyword() -> None:
    assert (
        error("FROM a\n\nRUNN make\n")
        == 'Dockerfile:3: unknown instruction "RUNN" (did you mean "RUN"?)'
    )


def test_unknown_instruction_without_a_close_match() -> None:
    assert error("FROM a\nXYZZY 1\n") == 'Dockerfile:2: unknown instruction "XYZZY"'


def test_the_file_name_is_the_one_given() -> None:
    with pytest.raises(DockerfileError, match=r"^build/app\.Dockerfile:1: unknown instruction"):
        parse_dockerfile("FORM a\n", "build/app.Dockerfile")


def test_errors_are_invalid_argument_with_a_line() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_dockerfile("FROM a\nCOPY x\n")
    assert isinstance(caught.value, DockerfileError)
    assert (caught.value.file, caught.value.line) == ("Dockerfile", 2)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("COPY --user=me a /b", "unknown flag: --user"),
        ("COPY --form=x a /b", "unknown flag: --form (did you mean --from?)"),
        ("COPY --from=a --from=b a /b", "duplicate flag specified: --from"),
        ("COPY --from a /b", "missing a value on flag: --from"),
        ("COPY --link= a /b", "missing a value on flag: --link"),
        ("COPY --link=yes a /b", "expecting boolean value for flag --link, not: yes"),
        ("ENV --x=1 A=1", "unknown flag: --x"),
        ("USER --x u", "unknown flag: --x"),
    ],
)
def test_flag_errors(line: str, message: str) -> None:
    assert error(f"FROM a\n{line}\n") == f"Dockerfile:2: {message}"


def test_flags_parse_kinds() -> None:
    flags = Flags(
        ["--s=1", "--b", "--m=x", "--m=y", "--f=FALSE"],
        {"s": STRING, "b": BOOL, "m": STRINGS, "f": BOOL, "unused": BOOL},
    )
    assert flags.string("s") == "1"
    assert flags.flag("b") is True
    assert flags.flag("f") is False
    assert flags.strings("m") == ("x", "y")
    assert flags.optional_flag("unused") is None
    assert flags.used == ("s", "b", "m", "f")


def test_a_flag_word_without_dashes_is_an_error() -> None:
    with pytest.raises(FlagError, match="arg should start with --"):
        Flags(["x"], {})


def test_instruction_before_from_is_an_error() -> None:
    assert error("RUN make\nFROM a\n").startswith(
        "Dockerfile:1: no build stage in current context: RUN must come after a FROM"
    )


def test_no_from_at_all_is_an_error() -> None:
    assert error("ARG A=1\n") == "Dockerfile: no stages to build: the Dockerfile has no FROM"


# -- FROM ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "image", "name", "platform"),
    [
        ("FROM alpine", "alpine", None, None),
        ("FROM alpine:3 AS Build", "alpine:3", "build", None),
        ("from a as b", "a", "b", None),
        ("FROM --platform=$BUILDPLATFORM golang AS tools", "golang", "tools", "$BUILDPLATFORM"),
        ("FROM ${BASE:-debian}", "${BASE:-debian}", None, None),
        ("FROM a AS my-stage_2.x", "a", "my-stage_2.x", None),
    ],
)
def test_from(line: str, image: str, name: str | None, platform: str | None) -> None:
    f = parse_dockerfile(line).stages[0].from_
    assert (f.image, f.name, f.platform) == (image, name, platform)


def test_from_keeps_the_as_keyword_and_name_as_written() -> None:
    f = parse_dockerfile("FROM a as Build").stages[0].from_
    assert (f.as_keyword, f.name_as_written, f.source.keyword) == ("as", "Build", "FROM")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("FROM", "FROM requires either one or three arguments"),
        ("FROM a b", "FROM requires either one or three arguments"),
        ("FROM a AS b c", "FROM requires either one or three arguments"),
        ("FROM a TO b", "FROM requires either one or three arguments"),
        ("FROM a AS 1st", 'invalid name for build stage: "1st"'),
        ("FROM a AS b/c", 'invalid name for build stage: "b/c"'),
        ("FROM --plat=x a", "unknown flag: --plat"),
    ],
)
def test_from_errors(line: str, message: str) -> None:
    assert message in error(line)


# -- RUN, CMD, ENTRYPOINT, SHELL ---------------------------------------------------------


def test_run_shell_form() -> None:
    run = one("RUN make  all", i.Run)
    assert run.command == i.CommandLine(("make  all",), shell_form=True)
    assert (run.network, run.security, run.mounts) == ("default", "sandbox", ())


def test_run_exec_form() -> None:
    assert one('RUN ["make", "all"]', i.Run).command == i.CommandLine(("make", "all"), False)


def test_run_flags() -> None:
    run = one(
        "RUN --network=none --security=insecure --mount=type=tmpfs,target=/t "
        "--mount=type=secret,id=tok make",
        i.Run,
    )
    assert (run.network, run.security) == ("none", "insecure")
    assert run.mounts == (
        Mount(type="tmpfs", target="/t", readonly=False),
        Mount(type="secret", id="tok", readonly=True),
    )
    assert run.mount_specs == ("type=tmpfs,target=/t", "type=secret,id=tok")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("RUN --network=bridge x", 'invalid network mode "bridge"'),
        ("RUN --security=root x", 'security "root" is not valid'),
        ("RUN --mount=type=nfs x", 'unsupported mount type "nfs"'),
        ("RUN --mount=from=$STAGE,target=/x x", "'from' doesn't support variable expansion"),
        ("RUN --device=x y", "unknown flag: --device"),
    ],
)
def test_run_errors(line: str, message: str) -> None:
    assert message in error(f"FROM a\n{line}\n")


def test_run_mounts_with_variables_wait_for_expansion() -> None:
    run = one("RUN --mount=type=$T,target=/c,from=build make", i.Run)
    assert run.mounts == (Mount(from_="build"),)
    done = expanded(run, {"T": "cache"})
    assert done.mounts == (Mount(type="cache", target="/c", from_="build", readonly=False),)


def test_run_mount_errors_after_expansion_point_at_the_line() -> None:
    run = one("RUN --mount=type=$T,target=/c make", i.Run)
    with pytest.raises(DockerfileError, match=r'^Dockerfile:2: unsupported mount type "bad"'):
        i.expand(run, {"T": "bad"})


def test_run_command_is_never_expanded() -> None:
    run = one("RUN echo $HOME", i.Run)
    assert expanded(run, {"HOME": "/x"}).command.args == ("echo $HOME",)


@pytest.mark.parametrize(
    ("line", "args", "shell_form"),
    [
        ("CMD app --flag", ("app --flag",), True),
        ('CMD ["app", "--flag"]', ("app", "--flag"), False),
        ("CMD", (), True),
        ("CMD []", (), False),
    ],
)
def test_cmd(line: str, args: tuple[str, ...], shell_form: bool) -> None:
    assert one(line, i.Cmd).command == i.CommandLine(args, shell_form)


def test_entrypoint_argv_with_a_shell() -> None:
    shell = ("/bin/sh", "-c")
    assert one("ENTRYPOINT exec app", i.Entrypoint).command.argv(shell) == (*shell, "exec app")
    assert one('ENTRYPOINT ["app"]', i.Entrypoint).command.argv(shell) == ("app",)


def test_shell() -> None:
    assert one('SHELL ["/bin/bash", "-eo", "pipefail", "-c"]', i.Shell).shell == (
        "/bin/bash",
        "-eo",
        "pipefail",
        "-c",
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("SHELL bash -c", "SHELL requires the arguments to be in JSON form"),
        ("SHELL []", "SHELL requires at least one argument"),
    ],
)
def test_shell_errors(line: str, message: str) -> None:
    assert message in error(f"FROM a\n{line}\n")


# -- RUN heredocs -------------------------------------------------------------------------

SH = ("/bin/sh", "-c")


def test_run_heredoc_alone_runs_the_body_in_the_shell() -> None:
    run = one("RUN <<EOF\napt-get update\napt-get install -y x\nEOF", i.Run)
    assert run.command.files == (Heredoc("EOF", "apt-get update\napt-get install -y x\n"),)
    assert run.invocation(SH) == i.RunInvocation((*SH, "apt-get update\napt-get install -y x\n"))


def test_run_heredoc_with_a_shebang_is_a_script() -> None:
    run = one("RUN <<-EOF\n\t#!/usr/bin/env python3\n\tprint(1)\n\tEOF", i.Run)
    invocation = run.invocation(SH)
    assert invocation.argv == (*SH, "/dev/pipes/EOF")
    assert invocation.script == i.InlineFile("EOF", "#!/usr/bin/env python3\nprint(1)\n", False)


def test_run_heredoc_used_by_a_command_goes_to_the_shell_whole() -> None:
    run = one("RUN python3 <<PY > out\nprint(1)\nPY", i.Run)
    assert run.invocation(SH).argv == (*SH, "python3 <<PY > out\nprint(1)\nPY")


def test_run_several_heredocs_go_to_the_shell_in_order() -> None:
    run = one("RUN cat <<A && cat <<B\na\nA\nb\nB", i.Run)
    assert run.invocation(SH).argv == (*SH, "cat <<A && cat <<B\na\nA\nb\nB")


def test_run_without_heredocs() -> None:
    assert one("RUN make", i.Run).invocation(SH) == i.RunInvocation((*SH, "make"))
    assert one('RUN ["make"]', i.Run).invocation(SH) == i.RunInvocation(("make",))


# -- ENV, LABEL, ARG ----------------------------------------------------------------------


def test_env_pairs_keep_quotes_until_expanded() -> None:
    env = one('ENV A=1 B="two words" C=$A', i.Env)
    assert env.pairs == (
        i.KeyValue("A", "1"),
        i.KeyValue("B", '"two words"'),
        i.KeyValue("C", "$A"),
    )
    assert expanded(env, {"A": "x"}).pairs == (
        i.KeyValue("A", "1"),
        i.KeyValue("B", "two words"),
        i.KeyValue("C", "x"),
    )


def test_env_legacy_form() -> None:
    env = one('ENV GREETING hello "world"', i.Env)
    assert env.pairs == (i.KeyValue("GREETING", 'hello "world"', legacy=True),)
    assert expanded(env, {}).pairs[0].value == "hello world"


def test_label_keys_expand_too() -> None:
    label = one('LABEL "$NS.version"="$V"', i.Label)
    assert expanded(label, {"NS": "org", "V": "1"}).pairs == (i.KeyValue("org.version", "1"),)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ENV", "ENV requires at least one argument"),
        ("ENV =x", "ENV names can not be blank"),
        ("LABEL", "LABEL requires at least one argument"),
        ("LABEL =x", "LABEL names can not be blank"),
        ("ARG", "ARG requires at least one argument"),
        ("ARG =x", "ARG names can not be blank"),
    ],
)
def test_name_value_errors(line: str, message: str) -> None:
    assert message in error(f"FROM a\n{line}\n")


def test_arg_definitions() -> None:
    arg = one('ARG A B=2 C="x y" D=', i.Arg)
    assert arg.args == (
        i.ArgDef("A"),
        i.ArgDef("B", "2"),
        i.ArgDef("C", '"x y"'),
        i.ArgDef("D", ""),
    )


def test_arg_doc_comments() -> None:
    df = parse_dockerfile(
        "FROM a\n# VERSION the release to build\n# other text\nARG VERSION OTHER\n"
    )
    arg = df.stages[0].instructions[0]
    assert isinstance(arg, i.Arg)
    assert [(d.name, d.doc) for d in arg.args] == [
        ("VERSION", "the release to build"),
        ("OTHER", ""),
    ]


def test_arg_is_not_expanded_by_expand() -> None:
    arg = one("ARG A=$B", i.Arg)
    assert expanded(arg, {"B": "1"}) == arg


# -- COPY, ADD ----------------------------------------------------------------------------


def test_copy() -> None:
    copy = one(
        "COPY --from=build --chown=app:app --chmod=0644 --link --parents "
        "--exclude=*.md --exclude=tests a b /dest/",
        i.Copy,
    )
    assert (copy.sources, copy.dest, copy.from_) == (("a", "b"), "/dest/", "build")
    assert (copy.chown, copy.chmod, copy.link, copy.parents) == ("app:app", "0644", True, True)
    assert copy.excludes == ("*.md", "tests")


def test_copy_defaults() -> None:
    copy = one("COPY . .", i.Copy)
    assert (copy.from_, copy.chown, copy.chmod, copy.link, copy.parents, copy.excludes) == (
        None,
        "",
        "",
        False,
        False,
        (),
    )


def test_copy_json_form_keeps_spaces_and_heredoc_looking_names() -> None:
    copy = one('COPY ["my file", "<<EOF", "/d/"]', i.Copy)
    assert (copy.sources, copy.contents) == (("my file", "<<EOF"), ())


def test_copy_heredocs_become_inline_files() -> None:
    copy = one("COPY <<one.txt <<-'two.txt' /dest/\n$A\none.txt\n\t$B\n\ttwo.txt", i.Copy)
    assert copy.sources == ()
    assert copy.contents == (
        i.InlineFile("one.txt", "$A\n", expand=True),
        i.InlineFile("two.txt", "$B\n", expand=False),
    )
    done = expanded(copy, {"A": "a", "B": "b"})
    assert [f.data for f in done.contents] == ["a\n", "$B\n"]


def test_copy_heredoc_expansion_keeps_quotes() -> None:
    copy = one("COPY <<EOF /f\necho \"$A\" '$A'\nEOF", i.Copy)
    assert expanded(copy, {"A": "1"}).contents[0].data == "echo \"1\" '1'\n"


def test_copy_mixes_paths_and_heredocs() -> None:
    copy = one("COPY a <<EOF b /d/\nx\nEOF", i.Copy)
    assert copy.sources == ("a", "b")
    assert copy.contents == (i.InlineFile("EOF", "x\n"),)


def test_copy_expansion() -> None:
    copy = one("COPY --chown=$U --chmod=$M --from=build ${SRC}/* $DEST", i.Copy)
    done = expanded(copy, {"U": "1:1", "M": "755", "SRC": "out", "DEST": "/opt"})
    assert (done.sources, done.dest, done.chown, done.chmod, done.from_) == (
        ("out/*",),
        "/opt",
        "1:1",
        "755",
        "build",
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("COPY a", "COPY requires at least two arguments"),
        ("ADD a", "ADD requires at least two arguments"),
        ("COPY", "COPY requires at least two arguments"),
        ("COPY a <<EOF\nx\nEOF", "COPY cannot accept a heredoc as a destination"),
        ("COPY --from=$STAGE a /b", "variable expansion is not supported for --from"),
        ("COPY --checksum=sha256:x a /b", "unknown flag: --checksum"),
        ("ADD --from=x a /b", "unknown flag: --from"),
    ],
)
def test_copy_and_add_errors(line: str, message: str) -> None:
    assert message in error(f"FROM a\n{line}\n")


def test_add() -> None:
    add = one(
        "ADD --checksum=sha256:abc --keep-git-dir=false --unpack --chown=1 "
        "https://example.com/a.tar.gz /opt/",
        i.Add,
    )
    assert add.sources == ("https://example.com/a.tar.gz",)
    assert (add.checksum, add.keep_git_dir, add.unpack, add.chown) == (
        "sha256:abc",
        False,
        True,
        "1",
    )


def test_add_unset_booleans_are_none() -> None:
    add = one("ADD a.tar /x/", i.Add)
    assert (add.keep_git_dir, add.unpack, add.link) == (None, None, False)


def test_add_expansion_covers_checksum() -> None:
    add = one("ADD --checksum=$SUM $URL /d", i.Add)
    done = expanded(add, {"SUM": "sha256:1", "URL": "https://x/y"})
    assert (done.checksum, done.sources) == ("sha256:1", ("https://x/y",))


# -- single-argument instructions -------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "kind", "field", "value", "env", "after"),
    [
        ("USER $U:staff", i.User, "user", "$U:staff", {"U": "app"}, "app:staff"),
        ("WORKDIR ${ROOT}/src", i.Workdir, "path", "${ROOT}/src", {"ROOT": "/w"}, "/w/src"),
        ("STOPSIGNAL $SIG", i.StopSignal, "signal", "$SIG", {"SIG": "SIGINT"}, "SIGINT"),
        ("MAINTAINER $ME", i.Maintainer, "maintainer", "$ME", {"ME": "x"}, "$ME"),
    ],
)
def test_single_argument_instructions(
    line: str, kind: type[i.Instruction], field: str, value: str, env: dict[str, str], after: str
) -> None:
    instruction = one(line, kind)
    assert getattr(instruction, field) == value
    assert getattr(expanded(instruction, env), field) == after


@pytest.mark.parametrize("keyword", ["USER", "WORKDIR", "STOPSIGNAL", "MAINTAINER"])
def test_single_argument_instructions_need_one(keyword: str) -> None:
    assert f"{keyword} requires exactly one argument" in error(f"FROM a\n{keyword}\n")


def test_workdir_keeps_spaces() -> None:
    assert one("WORKDIR /my dir", i.Workdir).path == "/my dir"


def test_volume() -> None:
    assert one("VOLUME /a $B", i.Volume).paths == ("/a", "$B")
    assert one('VOLUME ["/a b"]', i.Volume).paths == ("/a b",)
    assert expanded(one("VOLUME $B", i.Volume), {"B": "/b"}).paths == ("/b",)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("VOLUME", "VOLUME requires at least one argument"),
        ('VOLUME ["/a", " "]', "VOLUME specified can not be an empty string"),
        ("EXPOSE", "EXPOSE requires at least one argument"),
    ],
)
def test_volume_and_expose_errors(line: str, message: str) -> None:
    assert message in error(f"FROM a\n{line}\n")


def test_expose_sorts_as_written_and_splits_after_expansion() -> None:
    expose = one("EXPOSE 8080 $PORTS 443/tcp", i.Expose)
    assert expose.ports == ("$PORTS", "443/tcp", "8080")
    assert expanded(expose, {"PORTS": "1 2/udp"}).ports == ("1", "2/udp", "443/tcp", "8080")


# -- HEALTHCHECK --------------------------------------------------------------------------


def test_healthcheck_none() -> None:
    assert one("HEALTHCHECK NONE", i.Healthcheck).config == HealthcheckConfig(test=("NONE",))


def test_healthcheck_cmd_shell_form_with_options() -> None:
    hc = one(
        "HEALTHCHECK --interval=30s --timeout=1m30s --start-period=1.5s "
        "--start-interval=250ms --retries=3 CMD curl -f http://localhost/ || exit 1",
        i.Healthcheck,
    )
    assert hc.config == HealthcheckConfig(
        test=("CMD-SHELL", "curl -f http://localhost/ || exit 1"),
        interval=30 * SEC,
        timeout=90 * SEC,
        start_period=1_500_000_000,
        start_interval=250_000_000,
        retries=3,
    )


def test_healthcheck_cmd_exec_form() -> None:
    hc = one('healthcheck cmd ["/bin/check", "-q"]', i.Healthcheck)
    assert hc.config == HealthcheckConfig(test=("CMD", "/bin/check", "-q"))


def test_healthcheck_zero_durations_mean_the_default() -> None:
    hc = one("HEALTHCHECK --interval=0s --timeout=0 --retries=0 CMD x", i.Healthcheck)
    assert (hc.config.interval, hc.config.timeout, hc.config.retries) == (0, 0, 0)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
        ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
        ("HEALTHCHECK CMD", "missing command after HEALTHCHECK CMD"),
        ("HEALTHCHECK CONNECT TCP 7000", 'unknown type "CONNECT" in HEALTHCHECK (try CMD)'),
        ("HEALTHCHECK --interval=50us CMD x", "--interval cannot be less than 1ms"),
        ("HEALTHCHECK --timeout=-1s CMD x", "--timeout cannot be less than 1ms"),
        ("HEALTHCHECK --interval=5 CMD x", '--interval: invalid duration "5"'),
        ("HEALTHCHECK --retries=-1 CMD x", "--retries cannot be negative (-1)"),
        ("HEALTHCHECK --retries=many CMD x", '--retries: invalid number "many"'),
        ("HEALTHCHECK --every=1s CMD x", "unknown flag: --every"),
    ],
)
def test_healthcheck_errors(line: str, message: str) -> None:
    assert message in error(f"FROM a\n{line}\n")


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("0", 0),
        ("1ns", 1),
        ("1.5us", 1500),
        ("2µs", 2000),
        ("3ms", 3_000_000),
        ("1h2m3s", 3723 * SEC),
        ("+1s", SEC),
        ("-1s", -SEC),
        (".5s", SEC // 2),
        ("1.s", SEC),
        ("1.0000000005s", SEC),
    ],
)
def test_go_durations(text: str, nanos: int) -> None:
    assert parse_duration(text) == nanos


@pytest.mark.parametrize("text", ["", "1", "s", "1x", "1 s", ".s", "1s2", "-", "99999999999h"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(text)


# -- ONBUILD ------------------------------------------------------------------------------


def test_onbuild_holds_a_typed_trigger() -> None:
    onbuild = one("ONBUILD COPY --from=deps . /app", i.Onbuild)
    assert onbuild.expression == "COPY --from=deps . /app"
    assert isinstance(onbuild.trigger, i.Copy)
    assert onbuild.trigger.from_ == "deps"
    assert onbuild.trigger.source.lines == Lines(2, 2)


def test_onbuild_heredoc_expression_includes_the_body() -> None:
    onbuild = one("onbuild RUN <<EOF\nmake\nEOF", i.Onbuild)
    assert onbuild.expression == "RUN <<EOF\nmake\nEOF"
    assert isinstance(onbuild.trigger, i.Run)
    assert onbuild.trigger.command.files == (Heredoc("EOF", "make\n"),)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ONBUILD", "ONBUILD requires at least one argument"),
        ("ONBUILD ONBUILD RUN x", "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
        ("ONBUILD FROM x", "FROM isn't allowed as an ONBUILD trigger"),
        ("ONBUILD maintainer x", "MAINTAINER isn't allowed as an ONBUILD trigger"),
        ("ONBUILD RUNN x", 'unknown instruction "RUNN"'),
        ("ONBUILD COPY x", "COPY requires at least two arguments"),
    ],
)
def test_onbuild_errors(line: str, message: str) -> None:
    assert message in error(f"FROM a\n{line}\n")


# -- expansion ----------------------------------------------------------------------------


def test_expand_reports_used_and_undefined_names() -> None:
    result = i.expand(one("ENV A=$X B=${Y:-y}", i.Env), {"X": "1"})
    assert (result.used, result.undefined) == ({"X"}, {"Y"})


def test_expand_errors_point_at_the_instruction() -> None:
    workdir = one("WORKDIR ${DIR:?set DIR}", i.Workdir)
    with pytest.raises(DockerfileError, match=r"^Dockerfile:2: .*DIR: set DIR"):
        i.expand(workdir, {})


def test_expand_uses_the_dockerfile_escape() -> None:
    df = parse_dockerfile("# escape=`\nFROM a\nWORKDIR C:\\app`$X\n")
    workdir = df.stages[0].instructions[0]
    assert isinstance(workdir, i.Workdir)
    assert expanded_with(workdir, {"X": "1"}, df.escape).path == "C:\\app$X"


def expanded_with(instruction: i.Workdir, env: dict[str, str], escape: str) -> i.Workdir:
    result = i.expand(instruction, env, escape).instruction
    assert isinstance(result, i.Workdir)
    return result


@pytest.mark.parametrize(
    "line",
    ["CMD echo $X", "ENTRYPOINT $X", 'SHELL ["$X"]', "HEALTHCHECK CMD $X", "ONBUILD RUN $X"],
)
def test_instructions_that_never_expand(line: str) -> None:
    instruction = one(line, i.Instruction)
    result = i.expand(instruction, {"X": "1"})
    assert result.instruction == instruction
    assert result.undefined == frozenset()
