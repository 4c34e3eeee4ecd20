"""Multi-stage builds as a graph: which stages a target needs, in what order, in parallel.

``resolve`` expands every FROM line with the global ARGs and links the stages:

- ``FROM name`` builds on the stage of that (lower-case) name defined *earlier*; a name
  that only a later stage has, or the stage's own name, is an image reference;
- ``COPY --from=x`` and ``RUN --mount=...,from=x`` need the stage named ``x`` (any case;
  the last one of that name) or, for COPY, the stage with index ``x``; anything else is
  an image; variables are not allowed there;
- a stage built on a stage also runs that stage's ONBUILD triggers first, and needs what
  they need.

A stage can only need earlier stages: a reference to a later stage (or itself) is an
error when that stage is built, as in BuildKit. So the graph has no cycles, file order
is a valid build order, and ``stages_for(target)`` is the needed stages in file order::

    graph = resolve(parse_dockerfile(text), build_args={"V": "1"})
    [s.display_name for s in graph.stages_for("test")]   # ['build', 'test']
    graph.parallel_groups("release")   # ((deps, docs), (release,)): each group's
                                       # stages only need stages of earlier groups
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from moorage.build.dockerfile.args import GlobalArgs, global_args
from moorage.build.dockerfile.instructions import Copy, Instruction, Onbuild, Run
from moorage.build.dockerfile.source import DockerfileError, quoted
from moorage.build.dockerfile.stages import Dockerfile, Stage
from moorage.build.dockerfile.words import ExpansionError, ShellLexer

__all__ = ["BuildGraph", "Reference", "ResolvedStage", "resolve"]

_INDEX = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True)
class Reference:
    """A COPY --from or RUN --mount from= inside a stage."""

    instruction: Instruction
    written: str
    stage: int | None  # the stage it names, or None for an image


@dataclass(frozen=True)
class ResolvedStage:
    stage: Stage
    base: str  # the FROM image, expanded: an image reference or a stage's name
    base_stage: int | None
    platform: str | None  # --platform, expanded
    needs: tuple[int, ...]  # the earlier stages this one needs, in order
    images: tuple[str, ...]  # images named by COPY --from / RUN --mount from=
    triggers: tuple[Instruction, ...] = ()  # ONBUILD triggers of the base stage
    references: tuple[Reference, ...] = ()

    @property
    def index(self) -> int:
        return self.stage.index

    @property
    def name(self) -> str | None:
        return self.stage.name

    @property
    def display_name(self) -> str:
        return self.stage.display_name


@dataclass(frozen=True)
class BuildGraph:
    file: str
    global_args: GlobalArgs
    stages: tuple[ResolvedStage, ...]

    def target(self, name: str | None = None) -> ResolvedStage:
        """The stage ``--target`` names (any case), or the last stage."""
        if name is None:
            return self.stages[-1]
        found = [s for s in self.stages if s.name == name.lower()]
        if found:
            return found[-1]
        names = [s.name for s in self.stages if s.name]
        close = difflib.get_close_matches(name.lower(), names, n=1)
        hint = f" (did you mean {quoted(close[0])}?)" if close else ""
        raise DockerfileError(
            self.file, None, f"target stage {quoted(name)} could not be found{hint}"
        )

    def stages_for(self, target: str | None = None) -> tuple[ResolvedStage, ...]:
        """The stages ``target`` needs, itself included, in a valid build order."""
        wanted: set[int] = set()
        pending = [self.target(target).index]
        while pending:
            index = pending.pop()
            if index not in wanted:
                wanted.add(index)
                pending.extend(self.stages[index].needs)
        needed = tuple(s for s in self.stages if s.index in wanted)
        for stage in needed:
            _check_references(stage, self.stages)
        return needed

    def parallel_groups(self, target: str | None = None) -> tuple[tuple[ResolvedStage, ...], ...]:
        """``stages_for(target)`` in groups; a group needs only stages of earlier groups."""
        depth: dict[int, int] = {}
        for stage in self.stages_for(target):
            depth[stage.index] = 1 + max((depth[n] for n in stage.needs), default=-1)
        groups: list[list[ResolvedStage]] = [[] for _ in range(max(depth.values()) + 1)]
        for index, level in depth.items():
            groups[level].append(self.stages[index])
        return tuple(tuple(g) for g in groups)


def resolve(
    dockerfile: Dockerfile,
    *,
    build_args: Mapping[str, str] | None = None,
    defaults: Mapping[str, str] | None = None,
) -> BuildGraph:
    """Expand the FROM lines with the global ARGs and link the stages.

    ``defaults`` are the automatic platform ARGs (``args.platform_args``).
    """
    scope = global_args(
        dockerfile.meta_args,
        build_args=build_args or {},
        defaults=defaults or {},
        escape=dockerfile.escape,
    )
    lexer = ShellLexer(dockerfile.escape)
    earlier: dict[str, int] = {}
    resolved: list[ResolvedStage] = []
    for stage in dockerfile.stages:
        base = _expand_from(lexer, stage, stage.from_.image, scope)
        if not base:
            raise stage.from_.source.error(f"base name ({stage.from_.image}) should not be blank")
        platform = _platform(lexer, stage, scope)
        base_stage = earlier.get(base)
        resolved.append(_link(dockerfile, stage, base, base_stage, platform))
        if stage.name:
            earlier[stage.name] = stage.index
    return BuildGraph(dockerfile.file, scope, tuple(resolved))


def _expand_from(lexer: ShellLexer, stage: Stage, word: str, scope: GlobalArgs) -> str:
    try:
        return lexer.expand(word, scope.values).value
    except ExpansionError as exc:
        raise stage.from_.source.error(str(exc)) from None


def _platform(lexer: ShellLexer, stage: Stage, scope: GlobalArgs) -> str | None:
    written = stage.from_.platform
    if written is None:
        return None
    platform = _expand_from(lexer, stage, written, scope)
    if not platform:
        raise stage.from_.source.error(f"empty platform value from expression {written}")
    return platform


def _link(
    dockerfile: Dockerfile, stage: Stage, base: str, base_stage: int | None, platform: str | None
) -> ResolvedStage:
    triggers: tuple[Instruction, ...] = ()
    if base_stage is not None:
        parent = dockerfile.stages[base_stage].instructions
        triggers = tuple(i.trigger for i in parent if isinstance(i, Onbuild))
    own = (i for i in stage.instructions if not isinstance(i, Onbuild))
    refs = tuple(_references(dockerfile, (*triggers, *own)))
    needs = {r.stage for r in refs if r.stage is not None and r.stage < stage.index}
    if base_stage is not None:
        needs.add(base_stage)
    images = tuple(dict.fromkeys(r.written for r in refs if r.stage is None))
    return ResolvedStage(
        stage=stage,
        base=base,
        base_stage=base_stage,
        platform=platform,
        needs=tuple(sorted(needs)),
        images=images,
        triggers=triggers,
        references=refs,
    )


def _references(dockerfile: Dockerfile, instructions: Iterable[Instruction]) -> Iterable[Reference]:
    for instruction in instructions:
        if isinstance(instruction, Copy) and instruction.from_ is not None:
            stage = _copy_source(dockerfile, instruction)
            yield Reference(instruction, instruction.from_, stage)
        elif isinstance(instruction, Run):
            for mount in instruction.mounts:
                if mount.from_:
                    named = dockerfile.stage_named(mount.from_)
                    index = named.index if named is not None else None
                    yield Reference(instruction, mount.from_, index)


def _copy_source(dockerfile: Dockerfile, copy: Copy) -> int | None:
    written = copy.from_ or ""
    if _INDEX.fullmatch(written):
        index = int(written)
        if not 0 <= index < len(dockerfile.stages):
            raise copy.source.error(f"invalid stage index {index}")
        return index
    named = dockerfile.stage_named(written)
    return named.index if named else None


def _check_references(stage: ResolvedStage, stages: tuple[ResolvedStage, ...]) -> None:
    for ref in stage.references:
        if ref.stage is None or ref.stage < stage.index:
            continue
        source = ref.instruction.source
        if ref.stage == stage.index:
            raise source.error(f"circular dependency detected on stage: {stage.display_name}")
        other = stages[ref.stage].display_name
        if isinstance(ref.instruction, Copy):
            raise source.error(
                f"cannot copy from stage {quoted(other)}, it needs to be defined before "
                f"current stage {quoted(stage.display_name)}"
            )
        raise source.error(
            f"cannot mount from stage {quoted(other)}, it needs to be defined before "
            f"current stage {quoted(stage.display_name)}"
        )
