"""The build executor: a parsed Dockerfile, step by step, into image states.

For every stage the target needs (``graph.stages_for``), as soon as the stages it needs
are built (independent stages at the same time, their messages in stage order): the
base (an image, an earlier stage, or scratch), then each instruction, expanded with the
stage's variables (ENV, then the ARGs in scope) at that point:

- ENV, LABEL, CMD, ENTRYPOINT, EXPOSE, VOLUME, USER, STOPSIGNAL, HEALTHCHECK, SHELL,
  MAINTAINER, ONBUILD and ARG change the config only (an empty history entry);
- RUN runs in a root filesystem made from the current state (the backend's
  workspace) and what it changes becomes a layer; so do COPY, ADD (local sources)
  and WORKDIR (which makes its directory).

Every step has a cache key: the parent state's key, the expanded instruction, and what
else decides its outcome (the ARG values a RUN sees, the content a COPY copies). A
hit costs no container. Times are reproducible: the history and the image are dated
``SOURCE_DATE_EPOCH`` (a build arg), else the base image's date (scratch: the epoch),
and file times in new layers are clamped to that instant, so the same Dockerfile and
context give the same image digest.

Messages go to ``emit`` in Docker's classic builder shapes (``{"stream": ...}``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shlex
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from moorage.build import copy as copying
from moorage.build.backend import Backend, Cache, RunProcess, Workspace
from moorage.build.dockerfile import (
    Add,
    Arg,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    Instruction,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    StopSignal,
    User,
    Volume,
    Workdir,
    expand,
    lint,
    parse_dockerfile,
    resolve,
    stage_arg_values,
)
from moorage.build.dockerfile.args import DEFAULT_PATH
from moorage.build.dockerignore import PatternMatcher
from moorage.build.stage_output import OrderedOutput
from moorage.build.state import ImageState, empty_state, image_id, state_key
from moorage.errors import FailedPrecondition, InvalidArgument, MoorageError, NotSupported
from moorage.oci.image import ContainerConfig, History

__all__ = ["BuildError", "BuildOptions", "Executor"]

Emit = Callable[[dict[str, Any]], None]
DEFAULT_SHELL = ("/bin/sh", "-c")


# Stages built at the same time at most: enough to keep a few cores busy (one stage
# runs while another copies) without one build taking over a big machine.
PARALLEL_STAGES = 4


class BuildError(FailedPrecondition):
    """A step failed (a RUN's non-zero exit, a missing source...); the message says which."""


class _Stopped(Exception):
    """A stage stopped because another one failed."""


@dataclass(frozen=True)
class BuildOptions:
    dockerfile: str = "Dockerfile"
    target: str | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    no_cache: bool = False
    pull: bool = False
    network: str = "default"
    secrets: Mapping[str, bytes] = field(default_factory=dict)


@dataclass
class _Stage:
    """A stage as it builds: its state and variables."""

    state: ImageState
    args: dict[str, str]  # ARG values in scope (not in the image config)
    epoch: int
    cmd_set: bool = False


class Executor:
    def __init__(
        self,
        backend: Backend,
        cache: Cache,
        context: str,
        emit: Emit,
        ignore: PatternMatcher | None = None,
        *,
        scratch: str | None = None,
        context_in_place: bool = False,
    ) -> None:
        """``scratch``: a private directory for the build's own files (heredoc
        sources, private copies); a temporary one when not given.
        ``context_in_place``: ``context`` is a directory read where it is (not a copy
        made for this build); what a RUN step binds from it is then copied to scratch
        first, so that it sees what .dockerignore leaves in, and nothing it does or
        sees depends on the directory changing meanwhile."""
        self.backend = backend
        self.cache = cache
        self.context = context
        self._out = emit
        self.ignore = ignore
        self._scratch = scratch
        self._own_scratch = False
        self.context_in_place = context_in_place
        # Which stage a thread builds: its output channel and its step counter.
        self._local = threading.local()
        self._abort = threading.Event()

    def emit(self, message: dict[str, Any]) -> None:
        """A message of the step this thread runs (in stage order, see stage_output)."""
        getattr(self._local, "emit", self._out)(message)

    # --- the whole build ---------------------------------------------------------

    def build(self, text: bytes | str, options: BuildOptions) -> ImageState:
        try:
            return self._build(text, options)
        finally:
            if self._own_scratch and self._scratch is not None:
                shutil.rmtree(self._scratch, ignore_errors=True)
                self._scratch, self._own_scratch = None, False

    def _build(self, text: bytes | str, options: BuildOptions) -> ImageState:
        df = parse_dockerfile(text, options.dockerfile)
        graph = resolve(df, build_args=dict(options.build_args))
        checks = lint(df, build_args=dict(options.build_args))
        checks.check()  # `# check=error=true` makes warnings fail the build
        stages = graph.stages_for(options.target)
        self._first_step: dict[int, int] = {}
        total = 0
        for resolved in stages:
            self._first_step[resolved.index] = total
            total += 1 + len(resolved.triggers) + len(resolved.stage.instructions)
        if options.labels:
            total += 1  # Docker's classic builder adds them as a last LABEL step
        self._no_cache = options.no_cache
        self._total = total
        self._escape = df.escape
        done = self._stages(stages, graph, options)
        final = done[stages[-1].index]
        if options.labels:
            config = final.state.container_config
            labels = {**dict(config.labels), **dict(options.labels)}
            final.state = final.state.with_config(
                config._replace(labels=labels), self._history(final, "LABEL", True)
            )
            pairs = " ".join(f"{json.dumps(k)}='{v}'" for k, v in sorted(options.labels.items()))
            self._out({"stream": f"Step {total}/{total} : LABEL {pairs}\n"})
            self._out({"stream": f" ---> {image_id(final.state).removeprefix('sha256:')[:12]}\n"})
        if checks.warnings:  # as BuildKit lists them, once the build is through
            count = len(checks.warnings)
            lines = [f"{count} warning{'s' if count > 1 else ''} found:\n"]
            lines += [f" - {w.rule}: {w.message} (line {w.lines.start})\n" for w in checks.warnings]
            self._out({"stream": "".join(lines)})
        return final.state

    def _stages(self, stages: Any, graph: Any, options: BuildOptions) -> dict[int, _Stage]:
        """Every stage, each as soon as the stages it needs are built: independent
        ones at the same time (up to PARALLEL_STAGES), their output in stage order.
        The first failure stops the others at their next step; the error raised is
        the failing stage's (the first in stage order when several fail)."""
        output = OrderedOutput(self._out, [s.index for s in stages])
        done: dict[int, _Stage] = {}
        workers = min(len(stages), PARALLEL_STAGES)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stage") as pool:
            futures: dict[int, Future[None]] = {}
            # In build order: every stage a worker takes needs only stages already
            # taken, so waiting on them cannot starve the pool.
            for resolved in stages:
                futures[resolved.index] = pool.submit(
                    self._stage_task, resolved, done, futures, graph, options, output
                )
            wait(futures.values())
        errors = [f.exception() for f in futures.values()]
        failures = [e for e in errors if e is not None and not isinstance(e, _Stopped)]
        if failures:
            output.flush()
            raise failures[0]
        if any(errors):  # stopped with no failure of ours: cannot happen, but say so
            raise BuildError("the build was stopped")
        return done

    def _stage_task(
        self,
        resolved: Any,
        done: dict[int, _Stage],
        futures: dict[int, Future[None]],
        graph: Any,
        options: BuildOptions,
        output: OrderedOutput,
    ) -> None:
        for need in resolved.needs:
            if futures[need].exception() is not None:
                raise _Stopped()
        self._local.emit = output.emitter(resolved.index)
        self._local.step = self._first_step[resolved.index]
        try:
            done[resolved.index] = self._stage(resolved, done, graph, options)
        except BaseException:
            self._abort.set()
            raise
        finally:
            del self._local.emit
        output.finished(resolved.index)

    def _stage(
        self, resolved: Any, done: dict[int, _Stage], graph: Any, options: BuildOptions
    ) -> _Stage:
        self._announce(resolved.stage.from_)
        if resolved.base_stage is not None:
            parent = done[resolved.base_stage]
            stage = _Stage(parent.state, dict(parent.args), parent.epoch)
        elif resolved.base == "scratch":
            epoch = _epoch(options.build_args, None)
            stage = _Stage(empty_state(self.backend.architecture, _rfc3339(epoch)), {}, epoch)
        else:
            try:
                state = self.backend.base_image(resolved.base, pull=options.pull)
            except MoorageError as exc:
                raise resolved.stage.from_.source.error(str(exc)) from None
            stage = _Stage(state, {}, _epoch(options.build_args, state.config.created))
        self._done_step(stage.state)
        for instruction in (*resolved.triggers, *resolved.stage.instructions):
            if self._abort.is_set():
                raise _Stopped()
            self._announce(instruction)
            self._instruction(stage, instruction, done, graph, options)
            self._done_step(stage.state)
        return stage

    # --- messages ----------------------------------------------------------------

    def _announce(self, instruction: Instruction) -> None:
        self._local.step += 1
        text = instruction.source.original.strip()
        self.emit({"stream": f"Step {self._local.step}/{self._total} : {text}\n"})

    def _done_step(self, state: ImageState) -> None:
        # The id of the image after the step, as Docker's classic builder shows it (the
        # last one is the id of the image built).
        self.emit({"stream": f" ---> {image_id(state).removeprefix('sha256:')[:12]}\n"})

    # --- instructions --------------------------------------------------------------

    def _env(self, stage: _Stage) -> dict[str, str]:
        """What expansion sees: the ARGs in scope, then ENV (ENV wins a shared name)."""
        env = dict(stage.args)
        for item in stage.state.container_config.env:
            key, _, value = item.partition("=")
            env[key] = value
        return env

    def _instruction(
        self,
        stage: _Stage,
        instruction: Instruction,
        done: dict[int, _Stage],
        graph: Any,
        options: BuildOptions,
    ) -> None:
        if isinstance(instruction, Arg):
            env = self._env(stage)
            values = stage_arg_values(
                instruction,
                env=env,
                build_args=dict(options.build_args),
                global_values=dict(graph.global_args.values),
                escape=self._escape,
            )
            for value in values:
                if value.value is not None:
                    stage.args[value.name] = value.value
            return
        expanded = expand(instruction, self._env(stage), self._escape).instruction
        config = stage.state.container_config
        if isinstance(expanded, Run):
            self._run(stage, expanded, options, done, graph)
        elif isinstance(expanded, Copy | Add):
            self._copy(stage, expanded, done, graph)
        elif isinstance(expanded, Workdir):
            self._workdir(stage, expanded)
        else:
            new = self._config_change(stage, expanded, config)
            stage.state = stage.state.with_config(
                new, self._history(stage, _created_by(expanded), True)
            )

    def _config_change(
        self, stage: _Stage, instruction: Instruction, config: ContainerConfig
    ) -> ContainerConfig:
        if isinstance(instruction, Env):
            env = {e.partition("=")[0]: e for e in config.env}
            for pair in instruction.pairs:
                env[pair.key] = f"{pair.key}={pair.value}"
            return config._replace(env=tuple(env.values()))
        if isinstance(instruction, Label):
            labels = dict(config.labels)
            labels.update({p.key: p.value for p in instruction.pairs})
            return config._replace(labels=labels)
        if isinstance(instruction, Cmd):
            stage.cmd_set = True
            return config._replace(cmd=self._command(instruction.command, config))
        if isinstance(instruction, Entrypoint):
            entrypoint = self._command(instruction.command, config)
            # A CMD inherited from the base goes with a new ENTRYPOINT (Docker's rule).
            return config._replace(entrypoint=entrypoint, cmd=config.cmd if stage.cmd_set else None)
        if isinstance(instruction, Expose):
            ports = list(config.exposed_ports)
            for port in instruction.ports:
                key = port if "/" in port else f"{port}/tcp"
                if key not in ports:
                    ports.append(key)
            return config._replace(exposed_ports=tuple(ports))
        if isinstance(instruction, Volume):
            volumes = list(config.volumes)
            volumes += [p for p in instruction.paths if p not in volumes]
            return config._replace(volumes=tuple(volumes))
        if isinstance(instruction, User):
            return config._replace(user=instruction.user)
        if isinstance(instruction, StopSignal):
            return config._replace(stop_signal=instruction.signal)
        if isinstance(instruction, Healthcheck):
            return config._replace(healthcheck=instruction.config)
        if isinstance(instruction, Shell):
            return config._replace(shell=tuple(instruction.shell))
        if isinstance(instruction, Onbuild):
            return config._replace(on_build=(*config.on_build, instruction.expression))
        if isinstance(instruction, Maintainer):
            stage.state = ImageState(
                stage.state.layers, stage.state.config._replace(author=instruction.maintainer)
            )
            return config
        raise NotSupported(f"{type(instruction).__name__}: not supported by this builder")

    def _command(self, command: Any, config: ContainerConfig) -> tuple[str, ...]:
        if command.shell_form:
            return (*(config.shell or DEFAULT_SHELL), " ".join(command.args))
        return tuple(command.args)

    def _history(self, stage: _Stage, created_by: str, empty: bool) -> History:
        return History(created=_rfc3339(stage.epoch), created_by=created_by, empty_layer=empty)

    # --- steps with a root filesystem ---------------------------------------------

    def _cached(self, key: str, *, announce: bool = True) -> ImageState | None:
        """The cached result of step ``key`` (none with ``--no-cache``)."""
        if self._no_cache:
            return None
        hit = self.cache.get(key)
        if hit is not None and announce:
            self.emit({"stream": " ---> Using cache\n"})
        return hit

    def _key(self, stage: _Stage, *parts: str) -> str:
        h = hashlib.sha256(state_key(stage.state).encode())
        for part in parts:
            h.update(b"\0" + part.encode())
        return h.hexdigest()

    def _run(
        self, stage: _Stage, run: Run, options: BuildOptions, done: dict[int, _Stage], graph: Any
    ) -> None:
        config = stage.state.container_config
        invocation = run.invocation(tuple(config.shell or DEFAULT_SHELL))
        files: dict[str, tuple[bytes, int]] = {}
        if invocation.script is not None:
            path = f"{invocation.script_dir}/{invocation.script.name}"
            files[path] = (invocation.script.data.encode(), 0o755)
        binds: dict[str, tuple[str, bool]] = {}
        tmpfs: dict[str, int] = {}
        bound_content: list[str] = []  # what a bind from the context puts in the key
        # Binds made once the cache missed: (target, plan, host path, read-only) from the
        # context,
        # (target, state, source path, read-only) from a stage or an image.
        context_binds: list[tuple[str, copying.CopyPlan, str, bool]] = []
        from_binds: list[tuple[str, ImageState, str, bool]] = []
        secret_env: dict[str, str] = {}
        workdir = config.working_dir or "/"
        for mount in run.mounts:
            target = (
                mount.target
                if mount.target.startswith("/")
                else (os.path.join(workdir, mount.target) if mount.target else "")
            )
            if mount.type == "secret":
                secret_id = mount.id or os.path.basename(mount.target or "")
                data = options.secrets.get(secret_id)
                if data is None:
                    if mount.required:
                        raise run.source.error(f"secret {secret_id} not found")
                    continue
                if mount.env:
                    secret_env[mount.env] = data.decode(errors="replace")
                if mount.target or not mount.env:
                    path = target or f"/run/secrets/{secret_id}"
                    files[path] = (data, mount.mode if mount.mode is not None else 0o400)
            elif mount.type == "cache":
                cache_id = mount.id or target
                host = self.backend.cache_dir(
                    cache_id,
                    mount.mode if mount.mode is not None else 0o755,
                    mount.uid or 0,
                    mount.gid or 0,
                )
                binds[target] = (host, False)
            elif mount.type == "tmpfs":
                tmpfs[target] = mount.size
            elif mount.type == "bind":
                source = mount.source or "."
                mode = "ro" if mount.readonly else "rw"
                if mount.from_:
                    state = self._state_named(mount.from_, done, graph, run)
                    from_binds.append((target, state, source, mount.readonly))
                    bound_content.append(f"{target}={state_key(state)}:{source}:{mode}")
                    continue
                try:
                    host = copying.resolve_in(self.context, source)
                    plan = copying.plan_copy(
                        self.context, [source], "/bound/", workdir="/", ignore=self.ignore
                    )
                    digest = plan.digest()
                except MoorageError as exc:
                    raise run.source.error(f"RUN --mount=type=bind: {exc}") from None
                context_binds.append((target, plan, host, mount.readonly))
                bound_content.append(f"{target}={digest}:{mode}")
            else:
                raise run.source.error(f"RUN --mount=type={mount.type} is not supported")
        env = dict(stage.args)
        for item in config.env:
            key, _, value = item.partition("=")
            env[key] = value
        env.setdefault("PATH", DEFAULT_PATH)
        env.update(secret_env)
        created_by = f"RUN {' '.join(invocation.argv)}"
        args_used = json.dumps(sorted(stage.args.items()))
        secret_ids = json.dumps(sorted(files))  # which files, never their content
        key = self._key(
            stage,
            "RUN",
            json.dumps(invocation.argv),
            args_used,
            secret_ids,
            invocation.script.data if invocation.script else "",
            json.dumps(sorted(secret_env)),
            json.dumps(sorted(bound_content)),
            json.dumps(sorted(tmpfs)),
        )
        hit = self._cached(key)
        if hit is not None:
            stage.state = hit
            return
        with contextlib.ExitStack() as sources:
            for target, plan, host, readonly in context_binds:
                # A writable bind, or a context read in place, gets a private copy:
                # what the step writes there is dropped with it.
                if readonly and not self.context_in_place:
                    binds[target] = (host, True)
                else:
                    binds[target] = (self._private_copy(plan, host), readonly)
            for target, state, source, readonly in from_binds:
                other = sources.enter_context(self.backend.workspace(state))
                try:
                    binds[target] = (copying.resolve_in(other.path, source), readonly)
                except MoorageError as exc:
                    raise run.source.error(f"RUN --mount=type=bind: {exc}") from None
            self._run_process(
                stage, run, invocation, key, created_by, options, env, files, binds, tmpfs
            )

    def _run_process(
        self,
        stage: _Stage,
        run: Run,
        invocation: Any,
        key: str,
        created_by: str,
        options: BuildOptions,
        env: dict[str, str],
        files: dict[str, tuple[bytes, int]],
        binds: dict[str, tuple[str, bool]],
        tmpfs: dict[str, int],
    ) -> None:
        config = stage.state.container_config
        process = RunProcess(
            argv=tuple(invocation.argv),
            env=tuple(f"{k}={v}" for k, v in env.items()),
            user=config.user or "",
            cwd=config.working_dir or "/",
            network=run.network if run.network != "default" else options.network,
            files=files,
            binds=binds,
            tmpfs=tmpfs,
        )
        with self.backend.workspace(stage.state) as ws:
            self._ensure_dir(ws, process.cwd)
            code = self.backend.run(ws, process, lambda data: self.emit({"stream": _text(data)}))
            if code != 0:
                shown = (
                    shlex.join(invocation.argv)
                    if not run.command.shell_form
                    else (" ".join(invocation.argv))
                )
                raise BuildError(f"The command '{shown}' returned a non-zero code: {code}")
            layer = self.backend.layer_of(ws, stage.epoch)
        stage.state = self._with(stage, layer, created_by)
        self.cache.put(key, stage.state)

    def _private_copy(self, plan: copying.CopyPlan, host: str) -> str:
        """What ``plan`` selects from the context, copied under the scratch directory;
        the path to bind (a file's own path when the source is one file)."""
        root = self._scratch_dir("bind-")
        os.chmod(root, 0o755)
        copying.copy_into(plan, root)
        if os.path.isdir(host):
            return os.path.join(root, "bound")
        return os.path.join(root, "bound", plan.entries[0].target)

    def _state_named(self, ref: str, done: dict[int, _Stage], graph: Any, at: Any) -> ImageState:
        """The state of stage ``ref`` (built already), else of the image ``ref``."""
        index = _stage_named(graph, ref)
        if index is not None and index in done:
            return done[index].state
        try:
            return self.backend.base_image(ref, pull=False)
        except MoorageError as exc:
            raise at.source.error(str(exc)) from None

    def _scratch_dir(self, prefix: str) -> str:
        """A new private directory under scratch (made on first use)."""
        if self._scratch is None:
            self._scratch = tempfile.mkdtemp(prefix="moorage-build-")
            self._own_scratch = True
        return tempfile.mkdtemp(prefix=prefix, dir=self._scratch)

    def _with(self, stage: _Stage, layer: Any, created_by: str) -> ImageState:
        history = self._history(stage, created_by, layer is None)
        if layer is None:
            return stage.state.with_config(stage.state.container_config, history)
        return stage.state.with_layer(layer, history)

    def _workdir(self, stage: _Stage, workdir: Workdir) -> None:
        config = stage.state.container_config
        path = (
            workdir.path
            if workdir.path.startswith("/")
            else os.path.join(config.working_dir or "/", workdir.path)
        )
        path = os.path.normpath(path)
        stage.state = stage.state.with_config(
            config._replace(working_dir=path), self._history(stage, f"WORKDIR {path}", True)
        )
        key = self._key(stage, "WORKDIR-mkdir", path)
        hit = self._cached(key, announce=False)  # part of the WORKDIR step, not a step
        if hit is not None:
            stage.state = hit
            return
        with self.backend.workspace(stage.state) as ws:
            self._ensure_dir(ws, path)
            layer = self.backend.layer_of(ws, stage.epoch)
        if layer is not None:
            # The directory is part of the WORKDIR step: replace its empty entry.
            history = stage.state.config.history[:-1]
            state = ImageState(stage.state.layers, stage.state.config._replace(history=history))
            stage.state = state.with_layer(layer, self._history(stage, f"WORKDIR {path}", False))
        self.cache.put(key, stage.state)

    @staticmethod
    def _ensure_dir(ws: Workspace, path: str) -> None:
        with copying.directory_in(ws.path, path):
            pass

    def _copy(self, stage: _Stage, copy: Copy | Add, done: dict[int, _Stage], graph: Any) -> None:
        if copy.contents:
            self._copy_heredocs(stage, copy)
            return
        remote = [s for s in copy.sources if "://" in s or s.startswith("git@")]
        if remote:
            if not isinstance(copy, Add) or len(remote) != len(copy.sources):
                raise copy.source.error(
                    f"{'ADD' if isinstance(copy, Add) else 'COPY'} of remote sources "
                    f"is not supported here: {remote[0]}"
                )
            self._add_urls(stage, copy)
            return
        from_ = copy.from_ if isinstance(copy, Copy) else None
        verb = "COPY" if isinstance(copy, Copy) else "ADD"
        mode = int(copy.chmod, 8) if copy.chmod else None
        if from_ is None:
            self._copy_from(stage, copy, verb, self.context, self.ignore, mode, "context")
            return
        source_stage = _stage_named(graph, from_)
        if source_stage is not None and source_stage in done:
            source = done[source_stage].state
        else:
            try:
                source = self.backend.base_image(from_, pull=False)
            except MoorageError as exc:
                raise copy.source.error(str(exc)) from None
        # A stage or an image is named by its content (state_key), so the copy's key
        # can come from it and the copy's own words: a hit mounts nothing.
        origin = state_key(source)
        definition = json.dumps(
            [copy.sources, copy.dest, copy.chmod, copy.excludes, copy.link]
            + [getattr(copy, "parents", False)]
        )
        key = self._key(stage, verb, copy.chown, origin, definition)
        hit = self._cached(key)
        if hit is not None:
            stage.state = hit
            return
        with self.backend.workspace(source) as other:
            self._copy_from(stage, copy, verb, other.path, None, mode, origin, key=key)

    def _add_urls(self, stage: _Stage, add: Add) -> None:
        """``ADD https://host/file /dest``: each URL downloaded (http and https only;
        git sources are not supported) and copied as a file named after the URL's last
        path segment, 0600 unless --chmod (Docker's mode), never unpacked. With
        ``--checksum=sha256:...`` (one URL) the download must match it, and the cache
        is looked up by it before anything is fetched."""
        from moorage.build.fetch import download

        for url in add.sources:
            if not url.startswith(("http://", "https://")):
                raise add.source.error(f"ADD of {url}: only http and https URLs are supported")
        if add.checksum and len(add.sources) != 1:
            raise add.source.error("ADD --checksum works with one source only")
        key = None
        if add.checksum:
            key = self._key(stage, "ADD-url", add.chown, add.chmod, add.dest, add.checksum)
            hit = self._cached(key)
            if hit is not None:
                stage.state = hit
                return
        folder = self._scratch_dir("download-")
        names = []
        for url in add.sources:
            try:
                name = download(url, folder, checksum=add.checksum or None)
            except MoorageError as exc:
                raise add.source.error(f"ADD failed: {exc}") from None
            os.chmod(os.path.join(folder, name), int(add.chmod, 8) if add.chmod else 0o600)
            names.append(name)
        as_files = dataclasses.replace(add, sources=tuple(names), unpack=False)
        mode = int(add.chmod, 8) if add.chmod else None
        self._copy_from(stage, as_files, "ADD", folder, None, mode, "download", key=key)

    def _copy_heredocs(self, stage: _Stage, copy: Copy | Add) -> None:
        """``COPY <<EOF /dest``: each heredoc is a file named after its delimiter
        (0644, root's unless --chown/--chmod say otherwise), copied by the rules of
        any other source."""
        verb = "COPY" if isinstance(copy, Copy) else "ADD"
        if copy.sources or (isinstance(copy, Copy) and copy.from_):
            raise copy.source.error(
                f"{verb} of heredoc files together with other sources is not supported yet"
            )
        inline = self._scratch_dir("heredoc-")
        for file in copy.contents:
            if not file.name or "/" in file.name or file.name in (".", ".."):
                raise copy.source.error(f"{verb}: invalid heredoc file name {file.name!r}")
            path = os.path.join(inline, file.name)
            with open(path, "w", encoding="utf-8") as f:
                f.write(file.data)
            os.chmod(path, 0o644)
        names = tuple(file.name for file in copy.contents)
        as_files = dataclasses.replace(copy, sources=names, contents=())
        mode = int(copy.chmod, 8) if copy.chmod else None
        self._copy_from(stage, as_files, verb, inline, None, mode, "heredoc")

    def _copy_from(
        self,
        stage: _Stage,
        copy: Copy | Add,
        verb: str,
        root: str,
        ignore: PatternMatcher | None,
        mode: int | None,
        origin: str,
        *,
        key: str | None = None,
    ) -> None:
        """The copy; ``key`` is its cache key when the caller already looked it up
        (and missed), else it comes from the content of what is copied."""
        config = stage.state.container_config
        # Files from the context are root's in the image (Docker's rule); from a stage
        # or an image they keep their owners.
        owner = (0, 0) if origin in ("context", "heredoc", "download") else None
        try:
            plan = copying.plan_copy(
                root,
                copy.sources,
                copy.dest,
                workdir=config.working_dir or "/",
                owner=owner,
                mode=mode,
                excludes=copy.excludes,
                ignore=ignore,
            )
        except MoorageError as exc:
            raise copy.source.error(f"{verb} failed: {exc}") from None
        created_by = f"{verb} {' '.join(copy.sources)} {copy.dest}"
        if key is None:
            key = self._key(stage, verb, copy.chown, origin, plan.digest())
            hit = self._cached(key)
            if hit is not None:
                stage.state = hit
                return
        # ADD unpacks a local tar archive (recognised by its content) into the destination.
        archives = []
        entries = list(plan.entries)
        if isinstance(copy, Add) and copy.unpack is not False and origin == "context":
            for entry in plan.entries:
                if os.path.isfile(entry.source) and not os.path.islink(entry.source):
                    reader = copying.archive_reader(entry.source)
                    if reader is not None:
                        archives.append(reader)
                        entries.remove(entry)
        with self.backend.workspace(stage.state) as ws:
            chown: tuple[int, int] | None = None
            if copy.chown:
                try:
                    chown = owner = self.backend.lookup_user(ws, copy.chown)
                except MoorageError as exc:
                    raise copy.source.error(f"{verb} --chown: {exc}") from None
            if entries:
                copying.copy_into(
                    copying.CopyPlan(plan.dest_dir, tuple(entries), owner, plan.mode),
                    ws.path,
                    keep_xattrs=origin not in ("context", "heredoc", "download"),
                )
            dest = (
                copy.dest
                if copy.dest.startswith("/")
                else os.path.join(config.working_dir or "/", copy.dest)
            )
            for reader in archives:
                try:
                    copying.extract_archive(reader, ws.path, os.path.normpath(dest), chown)
                except MoorageError as exc:
                    raise copy.source.error(f"{verb} failed: {exc}") from None
            layer = self.backend.layer_of(ws, stage.epoch)
        stage.state = self._with(stage, layer, created_by)
        self.cache.put(key, stage.state)


def _stage_named(graph: Any, ref: str) -> int | None:
    for resolved in graph.stages:
        if resolved.name == ref.lower() or str(resolved.index) == ref:
            return int(resolved.index)
    return None


def _created_by(instruction: Instruction) -> str:
    return instruction.source.original.strip()


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _epoch(build_args: Mapping[str, str], base_created: str | None) -> int:
    """SOURCE_DATE_EPOCH (a build arg), else the base image's date, else 0."""
    value = build_args.get("SOURCE_DATE_EPOCH")
    if value is not None:
        try:
            return int(value)
        except ValueError:
            raise InvalidArgument(f'invalid SOURCE_DATE_EPOCH "{value}"') from None
    if base_created:
        text = re.sub(r"\.\d+", "", base_created).replace("Z", "+00:00")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return 0
        return int(moment.replace(tzinfo=moment.tzinfo or UTC).timestamp())
    return 0


def _rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
