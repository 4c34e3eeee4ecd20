"""The engine: one object per daemon that owns the services and their state."""

from __future__ import annotations

import os
import platform
from typing import Any

from moorage import __version__
from moorage.engine.config import EngineConfig


class Engine:
    """Holds the services; created off the event loop (opening the store does I/O)."""

    def __init__(self, config: EngineConfig) -> None:
        from moorage.engine.containers import ContainerService
        from moorage.engine.events import EventBus
        from moorage.engine.execs import ExecService
        from moorage.engine.images import ImageService
        from moorage.engine.network.service import NetworkService
        from moorage.engine.volumes import VolumeService

        self.config = config
        os.makedirs(config.root, mode=0o711, exist_ok=True)
        self.images = ImageService(config.root, insecure_registries=config.insecure_registries)
        self.volumes = VolumeService(config.root)
        self.events = EventBus()
        self.networks = NetworkService(
            config.root, bridge=config.bridge, bip=config.bip, dns=config.dns
        )
        self.networks.start()  # bridges up before any container (re)starts
        self.containers = ContainerService(
            config.root,
            config.exec_root,
            self.images,
            self.volumes,
            self.events,
            cgroup_parent=config.cgroup_parent,
            networks=self.networks,
        )
        self.execs = ExecService(self.containers)
        from moorage.engine.builds import BuildService

        self.builds = BuildService(config.root, self.images, self.containers, self.networks)

    def info(self) -> dict[str, Any]:
        images = self.images.list_images(all_images=True)
        return {
            "ID": "moorage",
            **self.containers.counts(),
            "Images": len(images),
            "Driver": self.images.snapshotter_name,
            "DockerRootDir": self.config.root,
            "OperatingSystem": _os_name(),
            "OSType": "linux",
            "Architecture": platform.machine(),
            "KernelVersion": platform.release(),
            "NCPU": os.cpu_count() or 1,
            "MemTotal": _mem_total(),
            "Name": platform.node(),
            "ServerVersion": __version__,
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": _cgroup_version(),
            "LoggingDriver": "json-file",
            # What `docker info` lists: without "inactive" it prints a swarm node's
            # fields; without Runtimes it leaves the default runtime out.
            "Plugins": {
                "Volume": ["local"],
                "Network": ["bridge", "host", "null"],
                "Authorization": None,
                "Log": ["json-file", "local"],
            },
            "Swarm": {
                "NodeID": "",
                "NodeAddr": "",
                "LocalNodeState": "inactive",
                "ControlAvailable": False,
                "Error": "",
                "RemoteManagers": None,
            },
            "Runtimes": {"moor-runtime": {"path": "moor-runtime"}},
            "DefaultRuntime": "moor-runtime",
            "SecurityOptions": ["name=seccomp,profile=builtin"],
            "RegistryConfig": _registry_config(self.config.insecure_registries),
        }

    def disk_usage(self) -> dict[str, Any]:
        """``GET /system/df``: images (with their container counts), containers, volumes."""
        data = self.images.disk_usage()
        for image in data["Images"]:
            image["Containers"] = len(self.containers.using_image(image["Id"]))
        data["Containers"] = self.containers.list(all_containers=True, size=True)
        volumes = self.volumes.list()["Volumes"] or []
        for volume in volumes:
            size, refs = self.volumes.usage(volume["Name"], self.volume_users)
            volume["UsageData"] = {"Size": size, "RefCount": refs}
        data["Volumes"] = volumes
        return data

    def volume_users(self, name: str) -> list[str]:
        """The ids of the containers that use volume ``name`` (the volumes' ``InUse``)."""
        return self.containers.using_volume(name)

    def close(self) -> None:
        self.builds.close()
        self.containers.close()
        self.networks.close()
        self.volumes.close()
        self.images.close()


def _registry_config(insecure: tuple[str, ...]) -> dict[str, Any]:
    """dockerd's ``RegistryConfig``: what ``docker info`` lists as insecure registries."""
    cidrs = ["127.0.0.0/8", "::1/128"] + [entry for entry in insecure if "/" in entry]
    hosts = [entry for entry in insecure if "/" not in entry]
    index = {
        host: {"Name": host, "Mirrors": [], "Secure": False, "Official": False} for host in hosts
    }
    index["docker.io"] = {"Name": "docker.io", "Mirrors": [], "Secure": True, "Official": True}
    return {
        "InsecureRegistryCIDRs": cidrs,
        "IndexConfigs": index,
        "Mirrors": [],
        "AllowNondistributableArtifactsCIDRs": None,
        "AllowNondistributableArtifactsHostnames": None,
    }


def _cgroup_version() -> str:
    from moorage.errors import MoorageError
    from moorage.sys.cgroupfs import CgroupFS

    try:
        return "2" if CgroupFS().mode() == "v2" else "1"
    except MoorageError:
        return ""


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
