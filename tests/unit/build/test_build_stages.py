"""Stages, ARG scoping, FROM resolution and the stage graph
(moorage.build.dockerfile.stages, .args, .graph)."""

from __future__ import annotations

import pytest

from moorage.build.dockerfile import instructions as i
from moorage.build.dockerfile.args import (
    ArgValue,
    global_args,
    platform_args,
    stage_arg_values,
)
from moorage.build.dockerfile.graph import BuildGraph, resolve
from moorage.build.dockerfile.source import DockerfileError
from moorage.build.dockerfile.stages import Dockerfile, parse_dockerfile, parse_trigger
from moorage.oci.platform import Platform

AMD64 = Platform("linux", "amd64")
ARM = Platform("linux", "arm", "v7")


def graph(text: str, build_args: dict[str, str] | None = None, **defaults: str) -> BuildGraph:
    return resolve(parse_dockerfile(text), build_args=build_args, defaults=defaults)


def names(stages: object) -> list[str]:
    assert isinstance(stages, tuple)
    return [s.display_name for s in stages]


# -- stages --------------------------------------------------------------------------------


def test_meta_args_come_before_the_first_from() -> None:
    df = parse_dockerfile("ARG A=1\nARG B\nFROM x AS one\nARG A\nRUN a\nFROM one\nRUN b\n")
    assert [d.name for a in df.meta_args for d in a.args] == ["A", "B"]
    assert [(s.index, s.name, len(s.instructions)) for s in df.stages] == [
        (0, "one", 2),
        (1, None, 1),
    ]
    assert [s.display_name for s in df.stages] == ["one", "stage-1"]


def test_stage_named_is_case_insensitive_and_takes_the_last() -> None:
    df = parse_dockerfile("FROM a AS x\nFROM b AS X\nFROM c\n")
    stage = df.stage_named("X")
    assert stage is not None
    assert stage.index == 1
    assert df.stage_named("nope") is None


# -- ARG scoping ---------------------------------------------------------------------------


def meta(text: str) -> tuple[i.Arg, ...]:
    return parse_dockerfile(text + "\nFROM scratch\n").meta_args


def test_global_args_defaults_chain_in_order() -> None:
    scope = global_args(meta("ARG A=1 B=${A}2\nARG C=$B$D"), build_args={}, defaults={})
    assert dict(scope.values) == {"A": "1", "B": "12", "C": "12"}
    assert scope.declared == {"A", "B", "C"}


def test_build_args_override_declared_globals_and_are_not_expanded() -> None:
    scope = global_args(
        meta("ARG A=1\nARG B=$A"), build_args={"A": "$X", "UNDECLARED": "u"}, defaults={}
    )
    assert dict(scope.values) == {"A": "$X", "B": "$X"}


def test_a_global_without_default_or_build_arg_has_no_value() -> None:
    scope = global_args(meta("ARG A"), build_args={}, defaults={})
    assert dict(scope.values) == {}
    assert scope.declared == {"A"}


def test_platform_args_are_global_and_overridable() -> None:
    defaults = platform_args(AMD64, ARM, "release")
    scope = global_args((), build_args={"TARGETOS": "freebsd"}, defaults=defaults)
    assert scope.values["TARGETPLATFORM"] == "linux/arm/v7"
    assert scope.values["TARGETARCH"] == "arm"
    assert scope.values["TARGETVARIANT"] == "v7"
    assert scope.values["BUILDPLATFORM"] == "linux/amd64"
    assert scope.values["BUILDVARIANT"] == ""
    assert scope.values["TARGETSTAGE"] == "release"
    assert scope.values["TARGETOS"] == "freebsd"


def test_platform_args_without_a_target_stage() -> None:
    assert platform_args(AMD64, AMD64, None)["TARGETSTAGE"] == "default"


def test_global_arg_error_points_at_the_arg() -> None:
    with pytest.raises(DockerfileError, match=r"^Dockerfile:2: .*A: need_A"):
        global_args(meta("ARG X=1\nARG A=${A:?need_A}"), build_args={}, defaults={})


def stage_arg(line: str) -> i.Arg:
    arg = parse_dockerfile(f"FROM scratch\n{line}\n").stages[0].instructions[0]
    assert isinstance(arg, i.Arg)
    return arg


def test_stage_arg_takes_the_build_arg_first() -> None:
    values = stage_arg_values(
        stage_arg("ARG A=default"), env={}, build_args={"A": "given"}, global_values={"A": "g"}
    )
    assert values == (ArgValue("A", "given"),)


def test_stage_arg_default_is_expanded_with_the_stage_variables() -> None:
    values = stage_arg_values(
        stage_arg("ARG A=$HOME/x B=$A-y C=$GLOBAL"),
        env={"HOME": "/root"},
        build_args={},
        global_values={"GLOBAL": "not visible"},
    )
    assert values == (
        ArgValue("A", "/root/x"),
        ArgValue("B", "/root/x-y"),
        ArgValue("C", "", frozenset({"GLOBAL"})),
    )


def test_stage_arg_without_default_takes_the_global_value() -> None:
    values = stage_arg_values(
        stage_arg("ARG VERSION TARGETARCH NEVER"),
        env={},
        build_args={},
        global_values={"VERSION": "1.2", "TARGETARCH": "arm64"},
    )
    assert values == (
        ArgValue("VERSION", "1.2"),
        ArgValue("TARGETARCH", "arm64"),
        ArgValue("NEVER", None),
    )


def test_stage_arg_default_with_quotes() -> None:
    values = stage_arg_values(
        stage_arg('ARG A="two words"'), env={}, build_args={}, global_values={}
    )
    assert values == (ArgValue("A", "two words"),)


def test_stage_arg_error_points_at_the_arg() -> None:
    with pytest.raises(DockerfileError, match=r"^Dockerfile:2: "):
        stage_arg_values(stage_arg("ARG A=${"), env={}, build_args={}, global_values={})


# -- FROM resolution -------------------------------------------------------------------------


def test_from_is_expanded_with_global_args_only() -> None:
    g = graph(
        "ARG BASE=alpine TAG=3\nFROM ${BASE}:${TAG} AS a\nARG TAG=9\nFROM $BASE:$TAG\n",
        build_args={"TAG": "edge"},
    )
    assert [s.base for s in g.stages] == ["alpine:edge", "alpine:edge"]


def test_from_may_use_platform_args() -> None:
    g = graph(
        "FROM --platform=$BUILDPLATFORM golang:$TARGETARCH\n", **platform_args(AMD64, ARM, None)
    )
    assert (g.stages[0].base, g.stages[0].platform) == ("golang:arm", "linux/amd64")


def test_from_an_earlier_stage() -> None:
    g = graph("FROM alpine AS base\nFROM base AS app\nFROM scratch\n")
    assert [(s.base, s.base_stage) for s in g.stages] == [
        ("alpine", None),
        ("base", 0),
        ("scratch", None),
    ]
    assert g.stages[1].needs == (0,)


def test_from_a_stage_name_through_an_arg() -> None:
    g = graph("ARG VARIANT=slim\nFROM a AS slim\nFROM b AS full\nFROM $VARIANT\n")
    assert g.stages[2].base_stage == 0


def test_from_a_later_stage_name_is_an_image() -> None:
    g = graph("FROM later AS first\nFROM alpine AS later\n")
    assert g.stages[0].base_stage is None
    assert g.stages[0].needs == ()


def test_from_its_own_name_is_an_image() -> None:
    assert graph("FROM app AS app\n").stages[0].base_stage is None


def test_from_matches_stage_names_exactly() -> None:
    assert graph("FROM a AS base\nFROM Base\n").stages[1].base_stage is None


def test_from_uses_the_latest_earlier_stage_of_a_name() -> None:
    g = graph("FROM a AS x\nFROM x AS x\nFROM x\n")
    assert [s.base_stage for s in g.stages] == [None, 0, 1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ARG BASE\nFROM $BASE\n", "Dockerfile:2: base name ($BASE) should not be blank"),
        ("FROM ${BASE:?nobase}\n", "Dockerfile:1: .*BASE: nobase"),
        ("ARG P\nFROM --platform=$P a\n", "Dockerfile:2: empty platform value from expression $P"),
    ],
)
def test_from_errors(text: str, message: str) -> None:
    with pytest.raises(
        DockerfileError, match=message.replace("(", r"\(").replace(")", r"\)").replace("$", r"\$")
    ):
        graph(text)


# -- references and needs ----------------------------------------------------------------

MULTI = """\
FROM golang AS deps
RUN go mod download
FROM node AS web
RUN npm ci
FROM deps AS build
COPY --from=web /dist /static
RUN go build -o /app
FROM build AS test
RUN --mount=type=cache,target=/root/.cache go test ./...
FROM alpine AS docs
RUN make docs
FROM scratch AS release
COPY --from=build /app /app
COPY --from=docs /docs /docs
"""


def test_needs_from_base_copy_and_mount() -> None:
    g = graph(MULTI)
    assert [(s.display_name, s.needs) for s in g.stages] == [
        ("deps", ()),
        ("web", ()),
        ("build", (0, 1)),
        ("test", (2,)),
        ("docs", ()),
        ("release", (2, 4)),
    ]


def test_stages_for_a_target_in_build_order() -> None:
    g = graph(MULTI)
    assert names(g.stages_for("release")) == ["deps", "web", "build", "docs", "release"]
    assert names(g.stages_for("test")) == ["deps", "web", "build", "test"]
    assert names(g.stages_for("WEB")) == ["web"]


def test_default_target_is_the_last_stage() -> None:
    g = graph(MULTI)
    assert g.target().display_name == "release"
    assert names(g.stages_for()) == names(g.stages_for("release"))


def test_parallel_groups() -> None:
    g = graph(MULTI)
    groups = [[s.display_name for s in group] for group in g.parallel_groups("release")]
    assert groups == [["deps", "web", "docs"], ["build"], ["release"]]


def test_parallel_groups_of_a_single_stage() -> None:
    assert [len(x) for x in graph("FROM a\n").parallel_groups()] == [1]


def test_unknown_target_names_it() -> None:
    with pytest.raises(
        DockerfileError,
        match=r'^Dockerfile: target stage "tset" could not be found \(did you mean "test"\?\)$',
    ):
        graph(MULTI).stages_for("tset")


def test_copy_from_an_index() -> None:
    g = graph("FROM a\nFROM b\nCOPY --from=0 /x /x\n")
    assert g.stages[1].needs == (0,)


def test_copy_from_an_index_out_of_range() -> None:
    with pytest.raises(DockerfileError, match="Dockerfile:3: invalid stage index 5"):
        graph("FROM a\nFROM b\nCOPY --from=5 /x /x\n")


def test_copy_from_is_case_insensitive() -> None:
    assert graph("FROM a AS Build\nFROM b\nCOPY --from=BUILD /x /x\n").stages[1].needs == (0,)


def test_copy_from_and_mount_from_images() -> None:
    g = graph(
        "FROM a\nCOPY --from=busybox:1 /bin/sh /sh\n"
        "RUN --mount=from=tools:2,target=/t --mount=from=busybox:1,target=/b x\n"
    )
    stage = g.stages[0]
    assert stage.needs == ()
    assert stage.images == ("busybox:1", "tools:2")
    assert [(r.written, r.stage) for r in stage.references] == [
        ("busybox:1", None),
        ("tools:2", None),
        ("busybox:1", None),
    ]


def test_copy_from_a_later_stage_fails_only_when_built() -> None:
    g = graph("FROM a AS first\nCOPY --from=second /x /x\nFROM b AS second\n")
    assert g.stages[0].needs == ()
    assert names(g.stages_for("second")) == ["second"]
    with pytest.raises(
        DockerfileError,
        match='Dockerfile:2: cannot copy from stage "second", '
        'it needs to be defined before current stage "first"',
    ):
        g.stages_for("first")


def test_mount_from_a_later_stage_fails() -> None:
    g = graph("FROM a AS first\nRUN --mount=from=later,target=/x x\nFROM b AS later\n")
    with pytest.raises(DockerfileError, match='Dockerfile:2: cannot mount from stage "later"'):
        g.stages_for("first")


def test_unnamed_stages_cannot_be_targets() -> None:
    with pytest.raises(DockerfileError, match='target stage "stage-0" could not be found'):
        graph("FROM a\nFROM b AS named\n").stages_for("stage-0")


def test_copy_from_itself_is_a_cycle() -> None:
    g = graph("FROM a AS self\nCOPY --from=self /x /y\n")
    with pytest.raises(
        DockerfileError, match="Dockerfile:2: circular dependency detected on stage: self"
    ):
        g.stages_for()


def test_a_stage_is_needed_once_even_if_referenced_many_times() -> None:
    g = graph("FROM a AS x\nFROM x\nCOPY --from=x /1 /1\nCOPY --from=0 /2 /2\n")
    assert g.stages[1].needs == (0,)


def test_a_stage_named_like_an_image_wins_over_the_image() -> None:
    g = graph("FROM alpine AS busybox\nFROM b\nCOPY --from=busybox /x /x\n")
    assert (g.stages[1].needs, g.stages[1].images) == ((0,), ())


# -- ONBUILD triggers --------------------------------------------------------------------


def test_a_stage_on_a_stage_runs_its_onbuild_triggers_and_needs_their_sources() -> None:
    g = graph(
        "FROM a AS assets\nFROM b AS base\nONBUILD COPY --from=assets /x /x\nONBUILD RUN make\n"
        "FROM base AS app\nFROM scratch\nCOPY --from=app / /\n"
    )
    base, app = g.stages[1], g.stages[2]
    assert base.needs == ()
    assert base.triggers == ()
    assert [type(t).__name__ for t in app.triggers] == ["Copy", "Run"]
    assert app.needs == (0, 1)
    assert names(g.stages_for()) == ["assets", "base", "app", "stage-3"]


def test_triggers_are_not_inherited_twice() -> None:
    g = graph("FROM a AS one\nONBUILD RUN x\nFROM one AS two\nFROM two AS three\n")
    assert [len(s.triggers) for s in g.stages] == [0, 1, 0]


def test_parse_trigger_from_an_image_config() -> None:
    df = parse_dockerfile("FROM a\n\nFROM base\n")
    trigger = parse_trigger("COPY --from=0 . /src", df.stages[1].from_)
    assert isinstance(trigger, i.Copy)
    assert trigger.source.lines == df.stages[1].from_.source.lines
    with pytest.raises(DockerfileError, match="Dockerfile:3: unknown instruction"):
        parse_trigger("BOGUS x", df.stages[1].from_)
    with pytest.raises(DockerfileError, match="Dockerfile:3: FROM isn't allowed"):
        parse_trigger("FROM x", df.stages[1].from_)


def test_resolve_keeps_the_global_scope() -> None:
    g = graph("ARG A=1\nFROM a\n", build_args={"A": "2"})
    assert dict(g.global_args.values) == {"A": "2"}
    assert isinstance(parse_dockerfile("FROM a"), Dockerfile)
