"""Container cgroups: the settings (:mod:`.resources`), the manager interface and its
factory (:mod:`.manager`), and the cgroup v1 and v2 implementations behind it."""

from moorage.runtime.cgroups.manager import (
    CgroupManager,
    CgroupStats,
    new_manager,
    normalize_cgroups_path,
)
from moorage.runtime.cgroups.resources import (
    BlockIOResources,
    CgroupResources,
    CpuResources,
    DeviceRule,
    HugepageLimit,
    MemoryResources,
    PidsResources,
)

__all__ = [
    "BlockIOResources",
    "CgroupManager",
    "CgroupResources",
    "CgroupStats",
    "CpuResources",
    "DeviceRule",
    "HugepageLimit",
    "MemoryResources",
    "PidsResources",
    "new_manager",
    "normalize_cgroups_path",
]
