"""Lint warnings with BuildKit's rule names (moorage.build.dockerfile.lint)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from moorage.build.dockerfile import instructions as i
from moorage.build.dockerfile.args import platform_args
from moorage.build.dockerfile.lint import Linter, LintResult, lint
from moorage.build.dockerfile.source import DockerfileError, Lines
from moorage.build.dockerfile.stages import parse_dockerfile
from moorage.oci.platform import Platform

AMD64 = Platform("linux", "amd64")
DEFAULTS = platform_args(AMD64, AMD64, None)


def run(
    text: str,
    build_args: dict[str, str] | None = None,
    image_env: Mapping[str, Mapping[str, str]] | None = None,
) -> LintResult:
    env = image_env
    return lint(
        parse_dockerfile(text),
        build_args=build_args,
        defaults=DEFAULTS,
        image_env=(lambda name: env.get(name)) if env is not None else None,
    )


def found(text: str, **kwargs: object) -> list[tuple[str, int]]:
    result = run(text, **kwargs)  # type: ignore[arg-type]
    return [(w.rule, w.lines.start) for w in result.warnings]


def messages(text: str, rule: str) -> list[str]:
    return [w.message for w in run(text).warnings if w.rule == rule]


def test_a_clean_dockerfile_has_no_warnings() -> None:
    text = (
        "FROM alpine AS build\nWORKDIR /src\nRUN make\n"
        'FROM scratch\nCOPY --from=build /a /a\nCMD ["/a"]\n'
    )
    assert run(text).warnings == ()


def test_json_args_recommended() -> None:
    assert found("FROM a\nCMD run me\nENTRYPOINT go\n") == [
        ("JSONArgsRecommended", 2),
        ("JSONArgsRecommended", 3),
    ]
    assert messages("FROM a\nCMD x\n", "JSONArgsRecommended") == [
        "JSON arguments recommended for CMD to prevent unintended behavior related to OS signals"
    ]


def test_json_args_not_recommended_after_a_shell_instruction() -> None:
    assert found('FROM a\nSHELL ["pwsh", "-c"]\nCMD Write-Host hi\n') == []


def test_a_shell_is_inherited_by_stages_built_on_the_stage() -> None:
    assert found('FROM a AS base\nSHELL ["bash", "-c"]\nFROM base\nCMD echo\n') == []


def test_from_as_casing() -> None:
    assert found("FROM a as b\n") == [("FromAsCasing", 1)]
    assert found("from a AS b\n") == [("FromAsCasing", 1)]
    assert messages("FROM a AS b\nfrom c as d\n", "FromAsCasing") == []
    assert messages("FROM a as b\n", "FromAsCasing") == [
        "'as' and 'FROM' keywords' casing do not match"
    ]


def test_stage_name_casing() -> None:
    assert found("FROM a AS Build\n") == [("StageNameCasing", 1)]
    assert messages("FROM a AS Build\n", "StageNameCasing") == [
        "Stage name 'Build' should be lowercase"
    ]


def test_duplicate_and_reserved_stage_names() -> None:
    assert found("FROM a AS x\nFROM b AS x\nFROM c AS scratch\n") == [
        ("DuplicateStageName", 2),
        ("ReservedStageName", 3),
    ]


def test_consistent_instruction_casing() -> None:
    assert found("FROM a\nRUN b\nrun c\nCopy d /e\n") == [
        ("ConsistentInstructionCasing", 3),
        ("ConsistentInstructionCasing", 4),
    ]
    assert messages("from a\nrun b\nRUN c\n", "ConsistentInstructionCasing") == [
        "Command 'RUN' should match the case of the command majority (lowercase)"
    ]


def test_maintainer_deprecated() -> None:
    assert found("FROM a\nMAINTAINER me\n") == [("MaintainerDeprecated", 2)]


def test_multiple_instructions_warn_at_the_earlier_one() -> None:
    text = 'FROM a\nCMD ["a"]\nHEALTHCHECK NONE\nCMD ["b"]\nHEALTHCHECK NONE\nFROM b\nCMD ["c"]\n'
    assert found(text) == [
        ("MultipleInstructionsDisallowed", 2),
        ("MultipleInstructionsDisallowed", 3),
    ]


def test_legacy_key_value_format() -> None:
    assert found("FROM a\nENV A 1\nLABEL b 2\nENV C=3\n") == [
        ("LegacyKeyValueFormat", 2),
        ("LegacyKeyValueFormat", 3),
    ]


def test_no_empty_continuation() -> None:
    assert found("FROM a\nRUN a \\\n\n  b\n") == [("NoEmptyContinuation", 2)]


def test_workdir_relative_path_only_before_an_absolute_one() -> None:
    assert found("FROM a\nWORKDIR app\n") == [("WorkdirRelativePath", 2)]
    assert found("FROM a\nWORKDIR /srv\nWORKDIR app\n") == []
    assert found("FROM a AS base\nWORKDIR /srv\nFROM base\nWORKDIR app\n") == []


def test_secrets_used_in_arg_or_env() -> None:
    text = "FROM a\nARG GITHUB_TOKEN\nENV DB_PASSWORD=x PUBLIC_KEY=y KEYBOARD=z\n"
    assert found(text) == [("SecretsUsedInArgOrEnv", 2), ("SecretsUsedInArgOrEnv", 3)]


def test_expose_checks() -> None:
    assert found("FROM a\nEXPOSE 80/TCP 8080:80 $P\n") == [
        ("ExposeInvalidFormat", 2),
        ("ExposeProtoCasing", 2),
    ]


def test_undefined_arg_in_from() -> None:
    assert found("ARG TAG\nFROM alpine:$TAG$OOPS\n") == [
        ("InvalidDefaultArgInFrom", 2),
        ("UndefinedArgInFrom", 2),
    ]
    assert found("FROM --platform=$BUILDPLATFORM golang:${TARGETARCH}\n") == []


def test_invalid_default_arg_in_from() -> None:
    assert found("ARG IMAGE\nFROM $IMAGE\n", build_args={"IMAGE": "alpine"}) == [
        ("InvalidDefaultArgInFrom", 2)
    ]
    assert found("ARG IMAGE=alpine\nFROM $IMAGE\n") == []


def test_redundant_target_platform() -> None:
    assert found("FROM --platform=$TARGETPLATFORM a\n") == [("RedundantTargetPlatform", 1)]


def test_constant_platform() -> None:
    assert found("FROM --platform=linux/arm64 a AS x\n") == [("FromPlatformFlagConstDisallowed", 1)]
    assert found("FROM --platform=linux/arm64 a AS build-arm64\n") == []


def test_undefined_var_on_scratch_and_stage_bases() -> None:
    text = (
        "FROM scratch AS base\nENV APP=/app\nARG DECLARED\nWORKDIR $APP/$DECLARED\n"
        "FROM base\nCOPY x $APP/$PATH/$DECLARED/$MISSING\nLABEL v=${MISSING2:-x}\n"
    )
    assert found(text) == [("UndefinedVar", 6), ("UndefinedVar", 7)]


def test_undefined_var_message_suggests_a_close_name() -> None:
    warnings = run("FROM scratch\nENV VERSION=1\nLABEL v=$VERSOIN\n").warnings
    assert [w.message for w in warnings] == [
        "Usage of undefined variable '$VERSOIN' (did you mean $VERSION?)"
    ]


def test_undefined_var_follows_arg_values_and_build_args() -> None:
    text = "ARG G=1\nFROM scratch\nARG G\nARG L=$G\nUSER $L\nARG B=$UNSET\n"
    assert found(text) == [("UndefinedVar", 6)]


def test_undefined_var_needs_the_image_env() -> None:
    text = "FROM debian\nWORKDIR $HOME/$NOPE\n"
    assert found(text) == []
    assert found(text, image_env={"debian": {"HOME": "/root"}}) == [("UndefinedVar", 2)]


def test_run_commands_are_not_checked_for_variables() -> None:
    assert found('FROM scratch\nRUN echo $NOPE\nCMD ["$NOPE"]\n') == []


def test_heredoc_bodies_are_checked_unless_quoted() -> None:
    text = "FROM scratch\nCOPY <<A /a\n$NOPE\nA\nCOPY <<'B' /b\n$NOPE\nB\n"
    assert found(text) == [("UndefinedVar", 2)]


def test_check_skip_directive() -> None:
    assert found("# check=skip=JSONArgsRecommended\nFROM a\nCMD x\nMAINTAINER m\n") == [
        ("MaintainerDeprecated", 4)
    ]
    assert found("# check=skip=all\nFROM a\nCMD x\nMAINTAINER m\n") == []


def test_check_comment_above_an_instruction() -> None:
    text = "FROM a\n# check=skip=JSONArgsRecommended\nCMD x\nENTRYPOINT y\n"
    assert found(text) == [("JSONArgsRecommended", 4)]


def test_check_error_fails_the_build_only_with_warnings() -> None:
    result = run("# check=error=true\nFROM a\nCMD x\nMAINTAINER m\n")
    assert result.fail
    with pytest.raises(
        DockerfileError,
        match=r"^Dockerfile: lint violation found for rules: "
        r"JSONArgsRecommended, MaintainerDeprecated$",
    ):
        result.check()
    run("# check=error=true\nFROM a\n").check()
    run("FROM a\nCMD x\n").check()


def test_warning_text_and_url() -> None:
    (warning,) = run("FROM a\nCMD x\n").warnings
    assert str(warning) == (
        "Dockerfile:2: JSONArgsRecommended: JSON arguments recommended for CMD to prevent "
        "unintended behavior related to OS signals"
    )
    assert warning.url == "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/"


def test_linter_for_the_executor() -> None:
    df = parse_dockerfile("FROM a\nWORKDIR $X/$Y/$Z\n")
    workdir = df.stages[0].instructions[0]
    assert isinstance(workdir, i.Workdir)
    undefined = i.expand(workdir, {"XX": "1"}).undefined
    linter = Linter(df)
    linter.undefined_vars(workdir, undefined, declared={"Z"}, env={"XX": "1"})
    assert [(w.message, w.lines) for w in linter.result().warnings] == [
        ("Usage of undefined variable '$X' (did you mean $XX?)", Lines(2, 2)),
        ("Usage of undefined variable '$Y'", Lines(2, 2)),
    ]


def test_lint_defaults_to_the_host_platform_args() -> None:
    assert lint(parse_dockerfile("FROM golang:$TARGETARCH\n")).warnings == ()
