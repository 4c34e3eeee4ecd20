"""Carrying a project out on the engine, through the Docker Engine API.

Everything goes through :class:`~moorage.api.client.Client`, so the engine may be a
remote daemon: images are built from a tar of the context (or the context in place,
when the daemon is local and says it can), pulled by the daemon, and containers are
created from :func:`~moorage.compose.spec.create_body`.

:meth:`Runner.up` creates the project's networks (``<project>_default`` and the
declared ones) and volumes (``<project>_<name>``), builds or pulls missing images,
asks the planner what to do and does it service by service in dependency order,
first waiting for each dependency's condition (``service_started``,
``service_healthy``, ``service_completed_successfully``). Progress goes to the
``progress`` callback, one line per step, as docker compose prints it.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from moorage.api.client import Client
from moorage.compose import planner
from moorage.compose.model import Project, Service
from moorage.compose.planner import LABEL_NETWORK, LABEL_PROJECT, LABEL_VOLUME, Observed
from moorage.compose.spec import create_body
from moorage.errors import Conflict, FailedPrecondition, MoorageError, NotFound

__all__ = ["DependencyFailed", "Runner"]

Progress = Callable[[str], None]


class DependencyFailed(FailedPrecondition):
    """A dependency did not reach its condition (unhealthy, failed, or gone)."""


class Runner:
    def __init__(
        self,
        client: Client,
        project: Project,
        progress: Progress | None = None,
        output: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.project = project
        self.progress = progress or (lambda line: None)
        self.output = output or (lambda text: None)  # build output

    # --- what the engine has -----------------------------------------------------------

    def observed(self, *, include_stopped: bool = True) -> list[Observed]:
        summaries = self.client.get_json(
            "/containers/json",
            all=int(include_stopped),
            filters={"label": [f"{LABEL_PROJECT}={self.project.name}"]},
        )
        return [Observed.from_summary(s) for s in summaries]

    def containers(
        self,
        services: Sequence[str] | None = None,
        *,
        include_stopped: bool = True,
        oneoff: bool = False,
    ) -> list[Observed]:
        """The project's containers (of ``services``), by service order and number."""
        order = {n: i for i, n in enumerate(self._all_order())}
        found = [
            c
            for c in self.observed(include_stopped=include_stopped)
            if (oneoff or not c.oneoff)
            and (services is None or c.service in services)
            and c.service in order
        ]
        return sorted(found, key=lambda c: (order[c.service], c.oneoff, c.number, c.name))

    def orphans(self) -> list[Observed]:
        known = set(self.project.services) | set(self.project.disabled)
        return [c for c in self.observed() if c.service not in known]

    def _all_order(self) -> list[str]:
        return self.project.order()

    def inspect(self, cid: str) -> dict[str, Any]:
        return dict(self.client.get_json(f"/containers/{cid}/json"))

    def image_id(self, reference: str) -> str | None:
        try:
            return str(self.client.get_json(f"/images/{reference}/json")["Id"])
        except NotFound:
            return None

    # --- networks and volumes ----------------------------------------------------------

    def ensure_networks(self, services: Iterable[str]) -> None:
        used = {n.name for s in services for n in self.project.services[s].networks}
        for network in self.project.networks.values():
            if network.name not in used:
                continue
            try:
                self.client.get_json(f"/networks/{network.name}")
                continue
            except NotFound:
                if network.external:
                    raise NotFound(
                        f"network {network.name} declared as external, but could not be found"
                    ) from None
            body: dict[str, Any] = {
                "Name": network.name,
                "Driver": network.driver or "bridge",
                "Labels": {
                    **network.labels,
                    LABEL_PROJECT: self.project.name,
                    LABEL_NETWORK: network.key,
                },
                "Internal": network.internal,
                "Attachable": network.attachable,
                "EnableIPv6": network.enable_ipv6,
            }
            if network.driver_opts:
                body["Options"] = dict(network.driver_opts)
            if network.ipam:
                body["IPAM"] = _ipam(network.ipam)
            self.progress(f"Network {network.name}  Creating")
            with contextlib.suppress(Conflict):  # made by a concurrent run
                self.client.request("POST", "/networks/create", json_body=body).read()
            self.progress(f"Network {network.name}  Created")

    def ensure_volumes(self, services: Iterable[str]) -> None:
        used = {
            m.source
            for s in services
            for m in self.project.services[s].mounts
            if m.type == "volume" and m.source
        }
        for volume in self.project.volumes.values():
            if volume.name not in used:
                continue
            try:
                self.client.get_json(f"/volumes/{volume.name}")
                continue
            except NotFound:
                if volume.external:
                    raise NotFound(f"external volume {volume.name!r} not found") from None
            body: dict[str, Any] = {
                "Name": volume.name,
                "Labels": {
                    **volume.labels,
                    LABEL_PROJECT: self.project.name,
                    LABEL_VOLUME: volume.key,
                },
            }
            if volume.driver:
                body["Driver"] = volume.driver
            if volume.driver_opts:
                body["DriverOpts"] = dict(volume.driver_opts)
            self.progress(f"Volume {volume.name}  Creating")
            self.client.request("POST", "/volumes/create", json_body=body).read()
            self.progress(f"Volume {volume.name}  Created")

    # --- images ------------------------------------------------------------------------

    def ensure_images(self, services: Iterable[str], *, build: bool = False) -> dict[str, str]:
        """Each service's image id, building or pulling what is missing (``build``:
        build every service that has a build section)."""
        ids: dict[str, str] = {}
        for name in services:
            service = self.project.services[name]
            current = self.image_id(service.image)
            if service.build is not None and (
                build or current is None or service.pull_policy == "build"
            ):
                current = self.build(service)
            elif current is None or service.pull_policy == "always":
                if service.pull_policy == "never":
                    raise NotFound(f"no such image: {service.image} (pull_policy is never)")
                self.pull(service)
                current = self.image_id(service.image)
            if current is None:
                raise NotFound(f"no such image: {service.image}")
            ids[name] = current
        return ids

    def build(self, service: Service, *, no_cache: bool = False, pull: bool = False) -> str:
        """Build the service's image; its id."""
        from moorage.api import build_context

        spec = service.build
        if spec is None:
            raise FailedPrecondition(f"service {service.name} has no build section")
        self.progress(f"Service {service.name}  Building")
        params: dict[str, Any] = {
            "version": "1",
            "t": [service.image, *spec.tags],
            "buildargs": dict(spec.args) or None,
            "labels": dict(spec.labels) or None,
            "target": spec.target,
            "nocache": no_cache or spec.no_cache,
            "pull": pull or spec.pull,
            "rm": True,
            "networkmode": spec.network,
        }
        dockerfile = os.path.join(spec.context, spec.dockerfile) if spec.dockerfile else None
        headers = build_context.stored_logins_header()
        image_id = None
        if spec.dockerfile_inline is None:
            image_id = self._build_in_place(spec.context, dockerfile, params, headers)
        if image_id is None:
            inline = spec.dockerfile_inline.encode() if spec.dockerfile_inline is not None else None
            packed = build_context.pack_context(spec.context, dockerfile, dockerfile_content=inline)
            with packed.file:
                params["dockerfile"] = packed.dockerfile
                image_id = self._post_build(packed.file, params, headers)
        self.progress(f"Service {service.name}  Built")
        return image_id or (self.image_id(service.image) or "")

    def _build_in_place(
        self, context: str, dockerfile: str | None, params: dict[str, Any], headers: dict[str, str]
    ) -> str | None:
        """The context read where it is by a local daemon that offers it (see
        :mod:`moorage.api.build_context`); None when it must be sent."""
        from moorage.api import build_context

        if os.geteuid() != 0:
            return None
        place = build_context.context_in_place(context, dockerfile)
        if place is None:
            return None
        ping = self.client.request("HEAD", "/_ping")
        ping.read()
        features = ping.headers.get(build_context.FEATURES_HEADER.lower(), "")
        if build_context.CONTEXT_DIR_FEATURE not in features.split(","):
            return None
        root, inside = place
        try:
            return self._post_build(
                io.BytesIO(b""),
                {**params, "dockerfile": inside},
                {**headers, build_context.CONTEXT_DIR_HEADER: root},
            )
        except MoorageError as exc:
            if str(exc).startswith(build_context.CONTEXT_DIR_DECLINED):
                return None
            raise

    def _post_build(self, body: Any, params: dict[str, Any], headers: dict[str, str]) -> str:
        response = self.client.request("POST", "/build", params=params, body=body, headers=headers)
        image_id = ""
        for message in response.iter_json_lines():
            if "errorDetail" in message or "error" in message:
                detail = message.get("errorDetail") or {}
                raise FailedPrecondition(
                    f"build failed: {detail.get('message') or message.get('error')}"
                )
            aux = message.get("aux")
            if isinstance(aux, dict):
                image_id = aux.get("ID") or image_id
            elif message.get("stream"):
                self.output(str(message["stream"]))
        return image_id

    def pull(self, service: Service) -> None:
        from moorage.oci.reference import parse_reference

        ref = parse_reference(service.image)
        self.progress(f"Image {service.image}  Pulling")
        response = self.client.request(
            "POST",
            "/images/create",
            params={
                "fromImage": ref.name,
                "tag": str(ref.digest) if ref.digest else ref.tag,
                "platform": service.platform,
            },
            headers=_auth_header(ref.domain),
        )
        for message in response.iter_json_lines():
            if "errorDetail" in message or "error" in message:
                detail = message.get("errorDetail") or {}
                raise FailedPrecondition(
                    f"pull {service.image}: {detail.get('message') or message.get('error')}"
                )
        self.progress(f"Image {service.image}  Pulled")

    def push(self, service: Service) -> None:
        from moorage.oci.reference import parse_reference

        ref = parse_reference(service.image)
        self.progress(f"Image {service.image}  Pushing")
        response = self.client.request(
            "POST",
            f"/images/{ref.name}/push",
            params={"tag": ref.tag},
            headers=_auth_header(ref.domain),
        )
        for message in response.iter_json_lines():
            if "errorDetail" in message or "error" in message:
                detail = message.get("errorDetail") or {}
                raise FailedPrecondition(
                    f"push {service.image}: {detail.get('message') or message.get('error')}"
                )
        self.progress(f"Image {service.image}  Pushed")

    # --- up ----------------------------------------------------------------------------

    def up(
        self,
        services: Sequence[str] | None = None,
        *,
        no_deps: bool = False,
        scale: Mapping[str, int] | None = None,
        force_recreate: bool = False,
        no_recreate: bool = False,
        build: bool = False,
        remove_orphans: bool = False,
        start: bool = True,
    ) -> planner.Plan:
        """Converge the project (see the module doc); the plan that was carried out."""
        names = self.project.order(services, with_deps=not no_deps)
        self.ensure_networks(names)
        self.ensure_volumes(names)
        image_ids = self.ensure_images(names, build=build)
        observed = self.observed()
        the_plan = planner.plan(
            self.project,
            observed,
            services=services,
            with_deps=not no_deps,
            scale=scale,
            force_recreate=force_recreate,
            no_recreate=no_recreate,
            image_ids=image_ids,
        )
        for orphan in the_plan.orphans:
            if remove_orphans:
                self._remove(orphan, stop=True)
            else:
                self.progress(
                    f"Found orphan container ({orphan.name}) for this project: "
                    "run with --remove-orphans to clean it up"
                )
        for service_plan in the_plan.services:
            service = self.project.services[service_plan.service]
            if start:
                self.wait_for_dependencies(service, names)
            for action in service_plan.actions:
                self._carry_out(action, service, image_ids.get(service.name, ""), start)
        return the_plan

    def _carry_out(
        self, action: planner.Action, service: Service, image_id: str, start: bool
    ) -> None:
        c = action.container
        if action.kind == "keep":
            assert c is not None
            self.progress(f"Container {c.name}  Running")
        elif action.kind == "start":
            assert c is not None
            if start:
                self._start(c.id, c.name)
        elif action.kind == "remove":
            assert c is not None
            self._remove(c, stop=True)
        elif action.kind == "recreate":
            assert c is not None
            self.progress(f"Container {c.name}  Recreate")
            self._stop(c.id, c.name)
            self.client.request("DELETE", f"/containers/{c.id}").read()
            cid, name = self._create(service, action.number, image_id)
            self.progress(f"Container {name}  Recreated")
            if start:
                self._start(cid, name)
        else:
            cid, name = self._create(service, action.number, image_id)
            if start:
                self._start(cid, name)

    def _containers_of(self) -> dict[str, str]:
        """The first container of each service (for ``network_mode: service:NAME``)."""
        out: dict[str, str] = {}
        for c in self.containers():
            out.setdefault(c.service, c.id)
        return out

    def _create(self, service: Service, number: int, image_id: str) -> tuple[str, str]:
        name = planner.container_name(self.project, service, number)
        body = create_body(
            self.project,
            service,
            number,
            image_id=image_id,
            containers_of=self._containers_of() if service.network_mode else None,
        )
        self.progress(f"Container {name}  Creating")
        cid = self.client.request(
            "POST", "/containers/create", params={"name": name}, json_body=body
        ).json()["Id"]
        self.progress(f"Container {name}  Created")
        return str(cid), name

    def _start(self, cid: str, name: str) -> None:
        self.progress(f"Container {name}  Starting")
        self.client.request("POST", f"/containers/{cid}/start").read()
        self.progress(f"Container {name}  Started")

    def _stop(self, cid: str, name: str, timeout: int | None = None) -> None:
        self.progress(f"Container {name}  Stopping")
        self.client.request("POST", f"/containers/{cid}/stop", params={"t": timeout}).read()
        self.progress(f"Container {name}  Stopped")

    def _remove(self, c: Observed, *, stop: bool, volumes: bool = False) -> None:
        if stop and c.running:
            self._stop(c.id, c.name)
        self.progress(f"Container {c.name}  Removing")
        with contextlib.suppress(NotFound):
            self.client.request(
                "DELETE", f"/containers/{c.id}", params={"force": int(stop), "v": int(volumes)}
            ).read()
        self.progress(f"Container {c.name}  Removed")

    # --- dependencies and --wait -------------------------------------------------------

    def wait_for_dependencies(self, service: Service, started: Iterable[str]) -> None:
        """Block until each dependency of ``service`` meets its condition."""
        started = set(started)
        for dep, spec in sorted(service.depends_on.items()):
            if dep not in started or dep not in self.project.services:
                continue
            containers = [c for c in self.containers([dep])]
            if spec.condition == "service_healthy":
                self.wait_healthy(containers, dependency_of=service.name)
            elif spec.condition == "service_completed_successfully":
                for c in containers:
                    self.wait_exit(c, dependency_of=service.name)

    def wait_exit(self, c: Observed, *, dependency_of: str = "") -> None:
        result = self.client.request(
            "POST", f"/containers/{c.id}/wait", params={"condition": "not-running"}
        ).json()
        code = int((result or {}).get("StatusCode") or 0)
        if code != 0:
            raise DependencyFailed(
                f'service "{c.service}" didn\'t complete successfully: exit {code}'
                + (f' (a dependency of "{dependency_of}")' if dependency_of else "")
            )
        self.progress(f"Container {c.name}  Exited")

    def wait_healthy(
        self, containers: Sequence[Observed], *, dependency_of: str = "", running_ok: bool = False
    ) -> None:
        """Until every container is healthy (``running_ok``: or running, for those that
        have no healthcheck). Health changes are heard as engine events."""
        if not containers:
            return
        ids = {c.id: c for c in containers}
        pending = set(ids)
        response = self.client.request(
            "GET",
            "/events",
            params={"filters": {"type": ["container"], "container": sorted(ids)}},
        )
        try:
            for cid in sorted(pending):
                if self._healthy(ids[cid], dependency_of, running_ok):
                    pending.discard(cid)
            if not pending:
                return
            for event in response.iter_json_lines():
                about = str(event.get("id") or (event.get("Actor") or {}).get("ID") or "")
                if about in pending and self._healthy(ids[about], dependency_of, running_ok):
                    pending.discard(about)
                if not pending:
                    return
        finally:
            response.close()
        raise DependencyFailed("the engine's event stream ended before the containers were up")

    def _healthy(self, c: Observed, dependency_of: str, running_ok: bool) -> bool:
        """True when healthy; False while it may still get there; an error otherwise."""
        state = self.inspect(c.id).get("State") or {}
        health = state.get("Health")
        suffix = f' (a dependency of "{dependency_of}")' if dependency_of else ""
        if not state.get("Running"):
            if (
                running_ok
                and health is None
                and state.get("ExitCode") == 0
                and state.get("Status") == "exited"
            ):
                return True
            raise DependencyFailed(
                f"container {c.name} exited ({state.get('ExitCode')}){suffix}"
                if state.get("Status") == "exited"
                else f"container {c.name} is not running{suffix}"
            )
        if health is None:
            if running_ok:
                return True
            raise DependencyFailed(f"container {c.name} has no healthcheck configured{suffix}")
        status = health.get("Status")
        if status == "healthy":
            self.progress(f"Container {c.name}  Healthy")
            return True
        if status == "unhealthy":
            raise DependencyFailed(f"container {c.name} is unhealthy{suffix}")
        return False

    def wait_up(self, services: Sequence[str] | None = None) -> None:
        """``--wait``: every container healthy, or running when it has no healthcheck."""
        names = self.project.order(services)
        self.progress("Waiting for the containers to be running or healthy")
        self.wait_healthy(self.containers(names), running_ok=True)

    # --- the other commands ------------------------------------------------------------

    def start(self, services: Sequence[str] | None = None) -> None:
        for name in self.project.order(services):
            service = self.project.services[name]
            self.wait_for_dependencies(service, self.project.order(services))
            for c in self.containers([name]):
                if not c.running:
                    self._start(c.id, c.name)

    def stop(self, services: Sequence[str] | None = None, timeout: int | None = None) -> None:
        names = self.project.order(services, with_deps=False)
        for c in reversed(self.containers(names, oneoff=True)):
            if c.running:
                self._stop(c.id, c.name, timeout)

    def restart(self, services: Sequence[str] | None = None, timeout: int | None = None) -> None:
        names = self.project.order(services, with_deps=False)
        for c in self.containers(names):
            self.progress(f"Container {c.name}  Restarting")
            self.client.request("POST", f"/containers/{c.id}/restart", params={"t": timeout}).read()
            self.progress(f"Container {c.name}  Started")

    def remove(
        self, services: Sequence[str] | None = None, *, stop: bool = False, volumes: bool = False
    ) -> list[Observed]:
        """Remove stopped containers (``stop``: stop running ones first); the removed."""
        names = self.project.order(services, with_deps=False)
        removed = []
        for c in reversed(self.containers(names, oneoff=True)):
            if c.running and not stop:
                continue
            self._remove(c, stop=stop, volumes=volumes)
            removed.append(c)
        return removed

    def down(
        self,
        *,
        volumes: bool = False,
        rmi: str | None = None,
        remove_orphans: bool = False,
        timeout: int | None = None,
    ) -> None:
        """Stop and remove the containers, then the networks (``volumes``: and the named
        volumes; ``rmi``: and the images, ``local`` those without an ``image:``)."""
        containers = list(reversed(self.containers(oneoff=True)))
        orphans = self.orphans()
        if remove_orphans:
            containers += orphans
        elif orphans:
            self.progress(
                f"Found orphan containers ({', '.join(c.name for c in orphans)}) for this "
                "project: run with --remove-orphans to clean them up"
            )
        for c in containers:
            if c.running:
                self._stop(c.id, c.name, timeout)
        for c in containers:
            self._remove(c, stop=False, volumes=volumes)
        networks = self.client.get_json(
            "/networks", filters={"label": [f"{LABEL_PROJECT}={self.project.name}"]}
        )
        external = {n.name for n in self.project.networks.values() if n.external}
        for network in networks:
            name = network.get("Name", "")
            if name in external:
                continue
            self.progress(f"Network {name}  Removing")
            try:
                self.client.request("DELETE", f"/networks/{network.get('Id') or name}").read()
            except NotFound:
                pass
            except Conflict as exc:
                self.progress(f"Network {name}  Resource is still in use: {exc}")
                continue
            self.progress(f"Network {name}  Removed")
        if volumes:
            for volume in self.project.volumes.values():
                if volume.external:
                    continue
                try:
                    self.client.request("DELETE", f"/volumes/{volume.name}").read()
                    self.progress(f"Volume {volume.name}  Removed")
                except NotFound:
                    pass
        if rmi:
            every = {**self.project.services, **self.project.disabled}
            for service in every.values():
                if rmi == "local" and "image" in service.config:
                    continue
                try:
                    self.client.request("DELETE", f"/images/{service.image}").read()
                    self.progress(f"Image {service.image}  Removed")
                except NotFound:
                    pass
                except Conflict as exc:
                    self.progress(f"Image {service.image}  {exc}")

    def run_container(
        self,
        service: Service,
        *,
        command: Sequence[str] | None,
        entrypoint: Sequence[str] | None = None,
        environment: Mapping[str, str] | None = None,
        user: str | None = None,
        working_dir: str | None = None,
        tty: bool = False,
        stdin_open: bool = False,
        name: str | None = None,
        auto_remove: bool = False,
        no_deps: bool = False,
        service_ports: bool = False,
    ) -> tuple[str, str]:
        """``run``: its dependencies up, then a one-off container created (not started);
        its (id, name)."""
        deps = [d for d in self.project.order([service.name]) if d != service.name]
        if deps and not no_deps:
            self.up(deps)
        self.ensure_networks([service.name])
        self.ensure_volumes([service.name])
        image_id = self.ensure_images([service.name]).get(service.name, "")
        name = name or f"{self.project.name}-{service.name}-run-{secrets.token_hex(6)}"
        body = create_body(
            self.project,
            service,
            1,
            oneoff=True,
            image_id=image_id,
            command=command,
            entrypoint=entrypoint,
            environment=environment,
            user=user,
            working_dir=working_dir,
            tty=tty,
            stdin_open=stdin_open,
            containers_of=self._containers_of() if service.network_mode else None,
            publish=service_ports,
        )
        body["AttachStdin"] = stdin_open
        body["AttachStdout"] = body["AttachStderr"] = True
        body["StdinOnce"] = stdin_open
        if auto_remove:
            body["HostConfig"]["AutoRemove"] = True
            body["HostConfig"].pop("RestartPolicy", None)
        cid = self.client.request(
            "POST", "/containers/create", params={"name": name}, json_body=body
        ).json()["Id"]
        return str(cid), name


def _ipam(ipam: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"Driver": ipam.get("driver") or "default"}
    config = []
    for entry in ipam.get("config") or ():
        item = {}
        for key, api in (("subnet", "Subnet"), ("ip_range", "IPRange"), ("gateway", "Gateway")):
            if entry.get(key):
                item[api] = entry[key]
        config.append(item)
    if config:
        out["Config"] = config
    return out


def _auth_header(domain: str) -> dict[str, str]:
    from moorage.api.registry_auth import (
        AUTH_HEADER,
        CredentialStore,
        encode_registry_auth,
        server_key,
    )

    try:
        credentials = CredentialStore().get(domain)
    except MoorageError:
        credentials = None
    return {AUTH_HEADER: encode_registry_auth(credentials, server_key(domain))}
