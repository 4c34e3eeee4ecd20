"""How the container commands show things, to the character the docker CLI does.

Pure functions over the API's JSON: ``ps`` rows (ids, image names, quoted and
cut commands, "5 seconds ago", port summaries), the status line of a container
(what the daemon puts in ``/containers/json``'s ``Status``), ``stats`` figures
computed from the daemon's two samples, ``events`` lines and ``top``'s columns.
Sizes and durations follow go-units, which docker uses: decimal sizes for disk
(``4.26MB``), binary ones for memory (``1.5GiB``), durations rounded the way
``HumanDuration`` rounds them (``About a minute``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

_DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")
_ZERO_TIME = "0001-01-01T00:00:00Z"

# --------------------------------------------------------------------------- units


def human_size(size: float, precision: int = 4) -> str:
    """go-units' HumanSizeWithPrecision: ``2.05kB``, ``16.43MB`` (decimal units)."""
    return _custom_size(size, 1000.0, _DECIMAL_UNITS, precision)


def bytes_size(size: float) -> str:
    """go-units' BytesSize: ``1.5MiB``, ``7.63GiB`` (binary units, for memory)."""
    return _custom_size(size, 1024.0, _BINARY_UNITS, 4)


def _custom_size(size: float, base: float, units: Sequence[str], precision: int) -> str:
    i = 0
    while size >= base and i < len(units) - 1:
        size /= base
        i += 1
    return f"{size:.{precision}g}{units[i]}"


def human_duration(seconds: float) -> str:
    """go-units' HumanDuration: ``Less than a second``, ``About a minute``, ``3 hours``."""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


# --------------------------------------------------------------------------- strings


def truncate_id(ident: str) -> str:
    """``sha256:0123...`` -> ``0123456789ab``, as docker shortens ids."""
    return ident.partition(":")[2][:12] if ":" in ident else ident[:12]


def ellipsis(text: str, width: int) -> str:
    """Cut ``text`` to ``width`` characters, the last one an ellipsis when cut."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    return text[:1] if width == 1 else text[: width - 1] + "…"


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_GO_ESCAPES |= {"\v": "\\v", "\\": "\\\\", '"': '\\"'}


def go_quote(text: str) -> str:
    """Go's strconv.Quote: printable characters kept (``…`` too), the rest escaped."""
    out = ['"']
    for ch in text:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def join_host_port(host: str, port: str | int) -> str:
    """Go's net.JoinHostPort: IPv6 hosts in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def natural_key(text: str) -> list[Any]:
    """Sort key for "natural" order (``80/tcp`` before ``443/tcp``)."""
    return [
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)
    ]


# --------------------------------------------------------------------------- ps


def display_ports(ports: Sequence[Mapping[str, Any]] | None) -> str:
    """docker's PORTS column: ``0.0.0.0:8080->80/tcp``, ranges grouped (``7000-7002/tcp``)."""
    groups: dict[str, list[int]] = {}  # key -> [first, last], in order of appearance
    result: list[str] = []
    mappings: list[str] = []
    for port in sorted(ports or (), key=_port_order):
        private = int(port.get("PrivatePort") or 0)
        kind = port.get("Type") or "tcp"
        ip = port.get("IP") or ""
        key = kind
        if ip:
            public = int(port.get("PublicPort") or 0)
            if public != private:
                mappings.append(f"{join_host_port(ip, public)}->{private}/{kind}")
                continue
            key = f"{ip}/{kind}"
        group = groups.get(key)
        if group is not None and private == group[1] + 1:
            group[1] = private
            continue
        if group is not None:
            result.append(_port_group(key, *group))
        groups[key] = [private, private]  # a key keeps its first place in the order
    result += [_port_group(key, first, last) for key, (first, last) in groups.items()]
    return ", ".join(result + mappings)


def _port_order(port: Mapping[str, Any]) -> tuple[int, str, int, str]:
    return (
        int(port.get("PrivatePort") or 0),
        port.get("IP") or "",
        int(port.get("PublicPort") or 0),
        port.get("Type") or "",
    )


def _port_group(key: str, first: int, last: int) -> str:
    ip, _, kind = key.rpartition("/")
    group = str(first) if first == last else f"{first}-{last}"
    if ip:
        group = f"{join_host_port(ip, group)}->{group}"
    return f"{group}/{kind}"


def display_image(image: str, image_id: str, trunc: bool) -> str:
    """The IMAGE column: the name as given, an id shortened, ``<no image>`` if none."""
    if not image:
        return "<no image>"
    if not trunc:
        return image
    if truncate_id(image) == truncate_id(image_id):
        return truncate_id(image)
    return _familiar(image)


def _familiar(image: str) -> str:
    from moorage.errors import InvalidArgument
    from moorage.oci.reference import parse_reference

    try:
        ref = parse_reference(image, default_tag=None)
    except InvalidArgument:
        return image
    if ref.digest is not None and ref.tag:
        ref = ref._replace(digest=None)
    return ref.familiar()


def display_names(names: Sequence[str] | None, trunc: bool) -> str:
    """NAMES: the container's own name (links, ``a/b``, only with --no-trunc)."""
    stripped = [n.removeprefix("/") for n in names or ()]
    if trunc:
        return next((n for n in stripped if "/" not in n), "")
    return ",".join(stripped)


def ps_row(
    summary: Mapping[str, Any], *, trunc: bool = True, now: float | None = None
) -> dict[str, Any]:
    """One ``/containers/json`` entry as the fields docker's ``ps`` templates know."""
    current = time.time() if now is None else now
    created = float(summary.get("Created") or 0)
    command = summary.get("Command") or ""
    labels = summary.get("Labels") or {}
    mounts = [m.get("Name") or m.get("Source") or "" for m in summary.get("Mounts") or ()]
    networks = ((summary.get("NetworkSettings") or {}).get("Networks")) or {}
    size_rw = int(summary.get("SizeRw") or 0)
    size_root = int(summary.get("SizeRootFs") or 0)
    size = human_size(size_rw, 3)
    if size_root > 0:
        size = f"{size} (virtual {human_size(size_root, 3)})"
    return {
        "ID": truncate_id(summary.get("Id", "")) if trunc else summary.get("Id", ""),
        "Image": display_image(summary.get("Image", ""), summary.get("ImageID", ""), trunc),
        "Command": go_quote(ellipsis(command, 20) if trunc else command),
        "CreatedAt": go_time_string(created),
        "RunningFor": human_duration(current - created) + " ago",
        "Ports": display_ports(summary.get("Ports")),
        "State": summary.get("State", ""),
        "Status": summary.get("Status", ""),
        "Names": display_names(summary.get("Names"), trunc),
        "Labels": ",".join(sorted(f"{k}={v}" for k, v in labels.items())),
        "Size": size,
        "Mounts": ",".join(ellipsis(m, 15) if trunc else m for m in mounts),
        "LocalVolumes": str(
            sum(1 for m in summary.get("Mounts") or () if m.get("Driver") == "local")
        ),
        "Networks": ",".join(networks),
    }


def go_time_string(timestamp: float) -> str:
    """Go's time.Time.String() in local time: ``2024-05-01 12:00:00 +0200 CEST``."""
    moment = datetime.fromtimestamp(timestamp).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S %z %Z")


# --------------------------------------------------------------------------- stats


def cpu_percent(stats: Mapping[str, Any]) -> float:
    """CPU use between the two samples of a stats response, in percent of one CPU."""
    cur = stats.get("cpu_stats") or {}
    pre = stats.get("precpu_stats") or {}
    cpu_delta = _usage(cur) - _usage(pre)
    system_delta = float(cur.get("system_cpu_usage") or 0) - float(pre.get("system_cpu_usage") or 0)
    online = float(cur.get("online_cpus") or 0)
    if online == 0:
        online = float(len((cur.get("cpu_usage") or {}).get("percpu_usage") or ()))
    if system_delta > 0 and cpu_delta > 0:
        return cpu_delta / system_delta * online * 100.0
    return 0.0


def _usage(sample: Mapping[str, Any]) -> float:
    return float((sample.get("cpu_usage") or {}).get("total_usage") or 0)


def memory_usage(memory: Mapping[str, Any]) -> float:
    """Usage without the page cache that can be dropped (inactive files), as docker shows."""
    usage = int(memory.get("usage") or 0)
    counters = memory.get("stats") or {}
    v1 = counters.get("total_inactive_file")
    if v1 is not None and v1 < usage:
        return float(usage - v1)
    v2 = int(counters.get("inactive_file") or 0)
    if v2 < usage:
        return float(usage - v2)
    return float(usage)


def block_io(blkio: Mapping[str, Any]) -> tuple[float, float]:
    read = write = 0
    for entry in blkio.get("io_service_bytes_recursive") or ():
        op = (entry.get("op") or "")[:1].lower()
        if op == "r":
            read += int(entry.get("value") or 0)
        elif op == "w":
            write += int(entry.get("value") or 0)
    return float(read), float(write)


def network_io(networks: Mapping[str, Any] | None) -> tuple[float, float]:
    rx = sum(int(n.get("rx_bytes") or 0) for n in (networks or {}).values())
    tx = sum(int(n.get("tx_bytes") or 0) for n in (networks or {}).values())
    return float(rx), float(tx)


def stats_row(
    container: str, stats: Mapping[str, Any] | None, *, trunc: bool = True
) -> dict[str, str]:
    """One line of ``moor stats``; ``stats`` None shows the ``--`` of a container
    whose figures could not be read."""
    if stats is None:
        name = container
        return {
            "Container": container,
            "Name": name,
            "ID": truncate_id(container) if trunc else container,
            "CPUPerc": "--",
            "MemUsage": "-- / --",
            "MemPerc": "--",
            "NetIO": "--",
            "BlockIO": "--",
            "PIDs": "--",
        }
    memory = stats.get("memory_stats") or {}
    used = memory_usage(memory)
    limit = float(memory.get("limit") or 0)
    rx, tx = network_io(stats.get("networks"))
    read, write = block_io(stats.get("blkio_stats") or {})
    ident = stats.get("id") or container
    return {
        "Container": container,
        "Name": (stats.get("name") or "").removeprefix("/") or "--",
        "ID": truncate_id(ident) if trunc else ident,
        "CPUPerc": f"{cpu_percent(stats):.2f}%",
        "MemUsage": f"{bytes_size(used)} / {bytes_size(limit)}",
        "MemPerc": f"{used / limit * 100.0 if limit else 0.0:.2f}%",
        "NetIO": f"{human_size(rx, 3)} / {human_size(tx, 3)}",
        "BlockIO": f"{human_size(read, 3)} / {human_size(write, 3)}",
        "PIDs": str(int((stats.get("pids_stats") or {}).get("current") or 0)),
    }


# --------------------------------------------------------------------------- events, top


def event_line(event: Mapping[str, Any]) -> str:
    """``2024-05-01T12:00:00.000000000+02:00 container start 0123... (image=busybox, name=web)``."""
    nanos = int(event.get("timeNano") or 0) or int(event.get("time") or 0) * 1_000_000_000
    parts = []
    if nanos:
        seconds, fraction = divmod(nanos, 1_000_000_000)
        moment = datetime.fromtimestamp(seconds).astimezone()
        zone = moment.strftime("%z")
        zone = "Z" if zone == "+0000" else f"{zone[:3]}:{zone[3:]}"
        parts.append(f"{moment.strftime('%Y-%m-%dT%H:%M:%S')}.{fraction:09d}{zone}")
    actor = event.get("Actor") or {}
    line = f"{event.get('Type', '')} {event.get('Action', '')} {actor.get('ID', '')}"
    attributes = actor.get("Attributes") or {}
    if attributes:
        line += " (" + ", ".join(f"{k}={attributes[k]}" for k in sorted(attributes)) + ")"
    parts.append(line)
    return " ".join(parts)


def tabwrite(rows: Sequence[Sequence[str]], min_width: int, padding: int) -> list[str]:
    """Go's tabwriter with ``' '`` fill: every column but the last at least ``min_width``
    wide, and ``padding`` wider than its longest cell."""
    if not rows:
        return []
    columns = max(len(r) for r in rows)
    widths = [
        max(min_width, max((len(r[i]) for r in rows if i < len(r) - 1), default=0) + padding)
        for i in range(columns)
    ]
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[i]) if i < len(row) - 1 else cell for i, cell in enumerate(row)]
        lines.append("".join(cells))
    return lines


# --------------------------------------------------------------------------- disk usage


def disk_usage_rows(data: Mapping[str, Any]) -> list[dict[str, str]]:
    """``system df``'s four lines from ``/system/df``, computed as the docker CLI does."""
    images = data.get("Images") or []
    image_total = int(data.get("LayersSize") or 0)
    image_used = sum(
        int(i["Size"]) - int(i["SharedSize"])
        for i in images
        if i.get("Containers") and i.get("Size", -1) != -1 and i.get("SharedSize", -1) != -1
    )
    containers = data.get("Containers") or []
    active_states = ("running", "paused", "restarting")
    container_total = sum(int(c.get("SizeRw") or 0) for c in containers)
    container_free = sum(
        int(c.get("SizeRw") or 0) for c in containers if c.get("State") not in active_states
    )
    volumes = [v for v in data.get("Volumes") or [] if _volume_size(v) != -1]
    volume_total = sum(_volume_size(v) for v in volumes)
    volume_free = sum(_volume_size(v) for v in volumes if not _volume_refs(v))
    cache = data.get("BuildCache") or []
    cache_total = sum(int(r.get("Size") or 0) for r in cache)
    cache_free = sum(
        int(r.get("Size") or 0) for r in cache if not r.get("InUse") and not r.get("Shared")
    )
    return [
        _usage_row("Images", len(images), sum(1 for i in images if i.get("Containers")),
                   image_total, image_total - image_used),
        _usage_row("Containers", len(containers),
                   sum(1 for c in containers if c.get("State") in active_states),
                   container_total, container_free),
        _usage_row("Local Volumes", len(data.get("Volumes") or []),
                   sum(1 for v in data.get("Volumes") or [] if _volume_refs(v)),
                   volume_total, volume_free),
        _usage_row("Build Cache", len(cache), sum(1 for r in cache if r.get("InUse")),
                   cache_total, cache_free, percent=False),
    ]  # fmt: skip


def _volume_size(volume: Mapping[str, Any]) -> int:
    return int((volume.get("UsageData") or {}).get("Size", -1))


def _volume_refs(volume: Mapping[str, Any]) -> int:
    return int((volume.get("UsageData") or {}).get("RefCount", 0))


def _usage_row(
    kind: str, total: int, active: int, size: int, reclaimable: int, *, percent: bool = True
) -> dict[str, str]:
    shown = human_size(reclaimable)
    if percent and size > 0:
        shown += f" ({reclaimable * 100 // size}%)"
    return {
        "Type": kind,
        "TotalCount": str(total),
        "Active": str(active),
        "Size": human_size(size),
        "Reclaimable": shown,
    }
