"""Cheap lint warnings in the spirit of BuildKit's build checks, with its rule names.

Warnings never stop a build unless the Dockerfile asks: ``# check=error=true`` makes
:meth:`LintResult.check` raise, ``# check=skip=RuleA,RuleB`` (or ``skip=all``) silences
rules, and a ``# check=skip=...`` comment just above one instruction silences them there.

:func:`lint` runs the rules that need only the Dockerfile (and, for ``UndefinedVar`` in
stages built on an image, that image's ENV through ``image_env``). During a build the
executor knows every stage's real variables: it can report ``UndefinedVar`` itself with
:meth:`Linter.undefined_vars` and the names ``instructions.expand`` returns::

    result = lint(parse_dockerfile(text))
    for w in result.warnings:
        print(w)        # Dockerfile:3: JSONArgsRecommended: JSON arguments recommended ...
    result.check()      # raises when the Dockerfile says check=error=true
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from moorage.build.dockerfile import instructions as i
from moorage.build.dockerfile.args import (
    DEFAULT_PATH,
    GlobalArgs,
    global_args,
    platform_args,
    stage_arg_values,
)
from moorage.build.dockerfile.directives import CheckOptions, parse_check_options
from moorage.build.dockerfile.source import DockerfileError, Lines, Source, quoted
from moorage.build.dockerfile.stages import Dockerfile, Stage
from moorage.build.dockerfile.words import Expansion, ExpansionError, ShellLexer
from moorage.errors import InvalidArgument
from moorage.oci.platform import host_platform, parse_platform
from moorage.oci.reference import parse_reference

__all__ = ["RULES", "LintResult", "LintWarning", "Linter", "lint"]

RULES = {
    "ConsistentInstructionCasing": "All instructions should use the same casing",
    "DuplicateStageName": "Stage names should be unique",
    "ExposeInvalidFormat": "EXPOSE should not map an IP address or a host port",
    "ExposeProtoCasing": "Protocols in EXPOSE should be lowercase",
    "FromAsCasing": "The 'as' keyword should match the case of the 'from' keyword",
    "FromPlatformFlagConstDisallowed": "FROM --platform should not use a constant value",
    "InvalidDefaultArgInFrom": "Default ARG values should give a valid base image name",
    "JSONArgsRecommended": "JSON arguments recommended for ENTRYPOINT and CMD",
    "LegacyKeyValueFormat": "The legacy key/value format with a space should not be used",
    "MaintainerDeprecated": "MAINTAINER is deprecated, use a label",
    "MultipleInstructionsDisallowed": "Only the last CMD, ENTRYPOINT or HEALTHCHECK counts",
    "NoEmptyContinuation": "Empty continuation lines will become errors",
    "RedundantTargetPlatform": "FROM --platform=$TARGETPLATFORM is the default",
    "ReservedStageName": "Reserved words should not be used as stage names",
    "SecretsUsedInArgOrEnv": "Sensitive data should not be passed with ARG or ENV",
    "StageNameCasing": "Stage names should be lowercase",
    "UndefinedArgInFrom": "FROM should only use declared ARGs",
    "UndefinedVar": "Variables should be defined before they are used",
    "WorkdirRelativePath": "A relative WORKDIR depends on the base image's",
}

_RESERVED_STAGE_NAMES = ("context", "scratch")
_NON_ENV_ARGS = frozenset({"BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"})
_SECRET = re.compile(
    r"(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)"
    r"(?:_|$)",
    re.IGNORECASE,
)
_NOT_SECRET = re.compile(r"(?:_|^)(?:public|file|version)(?:_|$)", re.IGNORECASE)
_DIRECTIVE = re.compile(r"\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*\Z")
_WORD_BREAK = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


@dataclass(frozen=True)
class LintWarning:
    rule: str
    message: str
    file: str
    lines: Lines

    @property
    def url(self) -> str:
        slug = _WORD_BREAK.sub("-", self.rule).lower()
        return f"https://docs.docker.com/go/dockerfile/rule/{slug}/"

    def __str__(self) -> str:
        return f"{self.file}:{self.lines.start}: {self.rule}: {self.message}"


@dataclass(frozen=True)
class LintResult:
    file: str
    warnings: tuple[LintWarning, ...]
    fail: bool  # the Dockerfile asked for check=error=true

    def check(self) -> None:
        """Raise when warnings must fail the build."""
        if self.fail and self.warnings:
            rules = ", ".join(sorted({w.rule for w in self.warnings}))
            raise DockerfileError(self.file, None, f"lint violation found for rules: {rules}")


class Linter:
    """Collects warnings for one Dockerfile, honouring its ``check`` settings."""

    def __init__(self, dockerfile: Dockerfile) -> None:
        self.dockerfile = dockerfile
        self.options = dockerfile.directives.check
        self.warnings: list[LintWarning] = []

    def warn(self, rule: str, at: Source | Lines, message: str) -> None:
        lines = at.lines if isinstance(at, Source) else at
        local = _comment_options(at.comments) if isinstance(at, Source) else None
        if self.options.skips(rule) or (local is not None and local.skips(rule)):
            return
        self.warnings.append(LintWarning(rule, message, self.dockerfile.file, lines))

    def undefined_vars(
        self,
        instruction: i.Instruction,
        undefined: Iterable[str],
        *,
        declared: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``UndefinedVar`` for names an expansion did not find.

        Names a stage declared with ARG (even without a value) are not reported.
        """
        skip = _NON_ENV_ARGS | set(declared)
        options = list(env or {})
        for name in sorted(set(undefined) - skip):
            close = difflib.get_close_matches(name, options, n=1)
            hint = f" (did you mean ${close[0]}?)" if close else ""
            message = f"Usage of undefined variable '${name}'{hint}"
            self.warn("UndefinedVar", instruction.source, message)

    def result(self) -> LintResult:
        ordered = sorted(self.warnings, key=lambda w: (w.lines.start, w.rule))
        return LintResult(self.dockerfile.file, tuple(ordered), self.options.error)


def _comment_options(comments: Iterable[str]) -> CheckOptions | None:
    for comment in comments:
        found = _DIRECTIVE.match(comment)
        if found and found[1].lower() == "check":
            try:
                return parse_check_options(found[2].split(" ", 1)[0])
            except ValueError:
                return None
    return None


ImageEnv = Callable[[str], Mapping[str, str] | None]


def lint(
    dockerfile: Dockerfile,
    *,
    build_args: Mapping[str, str] | None = None,
    defaults: Mapping[str, str] | None = None,
    image_env: ImageEnv | None = None,
) -> LintResult:
    """Every rule that can run before the build.

    ``defaults`` are the platform ARGs (the host's when not given); ``image_env`` gives a
    base image's ENV, or None when unknown (then ``UndefinedVar`` skips that stage).
    """
    linter = Linter(dockerfile)
    if defaults is None:
        host = host_platform()
        defaults = platform_args(host, host, None)
    for lines in dockerfile.empty_continuations:
        linter.warn("NoEmptyContinuation", lines, "Empty continuation line")
    _stage_names(linter, dockerfile)
    _casing(linter, dockerfile)
    _per_stage(linter, dockerfile)
    try:
        scope = global_args(
            dockerfile.meta_args,
            build_args=build_args or {},
            defaults=defaults,
            escape=dockerfile.escape,
        )
    except DockerfileError:
        return linter.result()  # the build reports the error itself
    _from_lines(linter, dockerfile, scope, defaults)
    _UndefinedVars(linter, dockerfile, scope, build_args or {}, image_env).run()
    return linter.result()


def _stage_names(linter: Linter, df: Dockerfile) -> None:
    seen: set[str] = set()
    for stage in df.stages:
        f = stage.from_
        if f.name is None:
            continue
        if f.name_as_written != f.name:
            linter.warn(
                "StageNameCasing", f.source, f"Stage name '{f.name_as_written}' should be lowercase"
            )
        if f.name in _RESERVED_STAGE_NAMES:
            linter.warn(
                "ReservedStageName",
                f.source,
                f"Stage name should not use the same name as reserved stage {quoted(f.name)}",
            )
        if f.name in seen:
            linter.warn(
                "DuplicateStageName",
                f.source,
                f"Duplicate stage name {quoted(f.name)}, stage names should be unique",
            )
        seen.add(f.name)
        _from_as_casing(linter, f)


def _from_as_casing(linter: Linter, f: i.From) -> None:
    keyword = f.source.keyword
    if keyword == keyword.lower():
        wrong = f.as_keyword != f.as_keyword.lower()
    elif keyword == keyword.upper():
        wrong = f.as_keyword != f.as_keyword.upper()
    else:
        return  # ConsistentInstructionCasing reports the keyword itself
    if wrong:
        message = f"'{f.as_keyword}' and '{keyword}' keywords' casing do not match"
        linter.warn("FromAsCasing", f.source, message)


def _casing(linter: Linter, df: Dockerfile) -> None:
    every = [s for st in df.stages for s in (st.from_.source, *(x.source for x in st.instructions))]
    lower = sum(1 for s in every if s.keyword == s.keyword.lower())
    upper = sum(1 for s in every if s.keyword == s.keyword.upper())
    majority_lower = lower > upper
    for source in every:
        expected = source.keyword.lower() if majority_lower else source.keyword.upper()
        if source.keyword != expected:
            casing = "lowercase" if majority_lower else "uppercase"
            message = (
                f"Command '{source.keyword}' should match the case of the command majority "
                f"({casing})"
            )
            linter.warn("ConsistentInstructionCasing", source, message)


@dataclass
class _Inherited:
    """What a stage passes to stages built on it."""

    shell: bool = False
    workdir: bool = False


def _per_stage(linter: Linter, df: Dockerfile) -> None:
    inherited: dict[str, _Inherited] = {}
    for stage in df.stages:
        state = replace(inherited.get(stage.from_.image, _Inherited()))
        _stage_rules(linter, stage, state)
        if stage.name:
            inherited[stage.name] = state


def _stage_rules(linter: Linter, stage: Stage, state: _Inherited) -> None:
    last: dict[str, i.Instruction] = {}
    for x in stage.instructions:
        keyword = x.source.keyword.upper()
        if isinstance(x, i.Cmd | i.Entrypoint | i.Healthcheck):
            if keyword in last:
                message = (
                    f"Multiple {keyword} instructions should not be used in the same stage "
                    "because only the last one will be used"
                )
                linter.warn("MultipleInstructionsDisallowed", last[keyword].source, message)
            last[keyword] = x
        if isinstance(x, i.Cmd | i.Entrypoint) and x.command.shell_form and not state.shell:
            message = (
                f"JSON arguments recommended for {keyword} to prevent unintended behavior "
                "related to OS signals"
            )
            linter.warn("JSONArgsRecommended", x.source, message)
        state.shell = state.shell or isinstance(x, i.Shell)
        _instruction_rules(linter, x, keyword, state)


def _instruction_rules(linter: Linter, x: i.Instruction, keyword: str, state: _Inherited) -> None:
    if isinstance(x, i.Maintainer):
        message = "Maintainer instruction is deprecated in favor of using label"
        linter.warn("MaintainerDeprecated", x.source, message)
    if isinstance(x, i.Env | i.Label) and any(p.legacy for p in x.pairs):
        message = (
            f'"{keyword} key=value" should be used instead of legacy "{keyword} key value" format'
        )
        linter.warn("LegacyKeyValueFormat", x.source, message)
    if isinstance(x, i.Env | i.Arg):
        names = [p.key for p in x.pairs] if isinstance(x, i.Env) else [a.name for a in x.args]
        for name in names:
            if _SECRET.search(name) and not _NOT_SECRET.search(name):
                message = (
                    "Do not use ARG or ENV instructions for sensitive data "
                    f"({keyword} {quoted(name)})"
                )
                linter.warn("SecretsUsedInArgOrEnv", x.source, message)
    if isinstance(x, i.Workdir):
        if not state.workdir and not x.path.startswith(("/", "$")):
            message = (
                f"Relative workdir {quoted(x.path)} can have unexpected results if the base "
                "image changes"
            )
            linter.warn("WorkdirRelativePath", x.source, message)
        state.workdir = True
    if isinstance(x, i.Expose):
        _expose(linter, x)


def _expose(linter: Linter, x: i.Expose) -> None:
    for port in x.ports:
        if "$" in port:
            continue
        _, _, proto = port.partition("/")
        if proto != proto.lower():
            message = f"Defined protocol '{port}' in EXPOSE instruction should be lowercase"
            linter.warn("ExposeProtoCasing", x.source, message)
        if ":" in port:
            message = (
                "EXPOSE instruction should not define an IP address or host-port mapping, "
                f"found '{port}'"
            )
            linter.warn("ExposeInvalidFormat", x.source, message)


def _from_lines(
    linter: Linter, df: Dockerfile, scope: GlobalArgs, defaults: Mapping[str, str]
) -> None:
    lexer = ShellLexer(df.escape)
    known = set(scope.values) | scope.declared
    try:
        default_scope = global_args(
            df.meta_args, build_args={}, defaults=defaults, escape=df.escape
        )
    except DockerfileError:
        default_scope = scope
    for stage in df.stages:
        f = stage.from_
        try:
            image = lexer.expand(f.image, scope.values)
            platform = lexer.expand(f.platform, scope.values) if f.platform else None
            with_defaults = lexer.expand(f.image, default_scope.values).value
        except ExpansionError:
            continue  # the build reports it
        for name in sorted(image.undefined - known):
            linter.warn("UndefinedArgInFrom", f.source, f"FROM argument '{name}' is not declared")
        if not _valid_reference(with_defaults):
            message = f"Default value for ARG {f.image} results in empty or invalid base image name"
            linter.warn("InvalidDefaultArgInFrom", f.source, message)
        if platform is not None:
            _platform_rules(linter, stage, platform, scope, known)


def _valid_reference(text: str) -> bool:
    try:
        parse_reference(text)
    except InvalidArgument:
        return False
    return True


def _platform_rules(
    linter: Linter, stage: Stage, platform: Expansion, scope: GlobalArgs, known: set[str]
) -> None:
    f = stage.from_
    for name in sorted(platform.undefined - known):
        linter.warn("UndefinedArgInFrom", f.source, f"FROM argument '{name}' is not declared")
    if (
        platform.used == {"TARGETPLATFORM"}
        and not platform.undefined
        and platform.value == scope.values.get("TARGETPLATFORM")
    ):
        message = (
            f"Setting platform to predefined {f.platform} in FROM is redundant as this is the "
            "default behavior"
        )
        linter.warn("RedundantTargetPlatform", f.source, message)
    if platform.used or platform.undefined:
        return
    try:
        parsed = parse_platform(platform.value)
    except InvalidArgument:
        return
    name = f.name or ""
    if parsed.os not in name and parsed.architecture not in name:
        message = f"FROM --platform flag should not use constant value {quoted(platform.value)}"
        linter.warn("FromPlatformFlagConstDisallowed", f.source, message)


class _UndefinedVars:
    """Replays each stage's variables to find expansions of names that are not set."""

    def __init__(
        self,
        linter: Linter,
        df: Dockerfile,
        scope: GlobalArgs,
        build_args: Mapping[str, str],
        image_env: ImageEnv | None,
    ) -> None:
        self.linter = linter
        self.df = df
        self.scope = scope
        self.build_args = build_args
        self.image_env = image_env
        self.lexer = ShellLexer(df.escape)
        self.finals: dict[str, tuple[dict[str, str], set[str]] | None] = {}

    def run(self) -> None:
        for stage in self.df.stages:
            final = self.stage(stage)
            if stage.name:
                self.finals[stage.name] = final

    def start(self, stage: Stage) -> tuple[dict[str, str], set[str]] | None:
        try:
            base = self.lexer.expand(stage.from_.image, self.scope.values).value
        except ExpansionError:
            return None
        if base in self.finals:
            parent = self.finals[base]
            return None if parent is None else (dict(parent[0]), set(parent[1]))
        env = {} if base == "scratch" else self.image_env(base) if self.image_env else None
        if env is None:
            return None
        return {"PATH": DEFAULT_PATH, **env}, set()

    def stage(self, stage: Stage) -> tuple[dict[str, str], set[str]] | None:
        start = self.start(stage)
        if start is None:
            return None
        env, declared = start
        for x in stage.instructions:
            if isinstance(x, i.Arg):
                self.arg(x, env, declared)
                continue
            try:
                done = i.expand(x, env, self.df.escape)
            except DockerfileError:
                continue  # the build reports it
            self.linter.undefined_vars(x, done.undefined, declared=declared, env=env)
            if isinstance(done.instruction, i.Env):
                env.update((p.key, p.value) for p in done.instruction.pairs)
        return env, declared

    def arg(self, x: i.Arg, env: dict[str, str], declared: set[str]) -> None:
        try:
            values = stage_arg_values(
                x,
                env=env,
                build_args=self.build_args,
                global_values=self.scope.values,
                escape=self.df.escape,
            )
        except DockerfileError:
            return
        for value in values:
            declared.add(value.name)
            self.linter.undefined_vars(x, value.undefined, declared=declared, env=env)
            if value.value is not None:
                env[value.name] = value.value
