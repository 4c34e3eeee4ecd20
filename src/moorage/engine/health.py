"""Health checks (``HEALTHCHECK``, ``--health-cmd``), run by the daemon as dockerd does.

Each running container with a check gets one thread that execs the probe in the
container through its monitor every ``Interval``; a probe that outlives
``Timeout`` is killed and counts as a failure. ``Retries`` failures in a row make
the container ``unhealthy``; one success makes it ``healthy``; failures during
``StartPeriod`` do not count. The last five results are kept in
``State.Health.Log``, and the state is saved in the container record so that a
restarted daemon carries on where it was.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import select
import signal
import threading
import time
from typing import Any

from moorage.engine.container_record import Container, now_rfc3339, parse_rfc3339
from moorage.engine.execs import process_spec
from moorage.errors import MoorageError

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
MAX_OUTPUT = 4096  # bytes of probe output kept, as Docker
KEEP_RESULTS = 5
STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"


def _seconds(ns: Any, default: float) -> float:
    return ns / 1e9 if isinstance(ns, int) and ns > 0 else default


def probe_command(test: list[str]) -> list[str] | None:
    """The argv of a check, or None for ``NONE`` / no check."""
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])]
    if test[0] == "CMD":
        return list(test[1:]) or None
    return list(test)  # Docker treats a bare list as CMD


class HealthService:
    def __init__(self, containers: Any) -> None:
        self.containers = containers
        self._lock = threading.Lock()
        self._stops: dict[str, threading.Event] = {}

    def started(self, c: Container) -> None:
        check = c.config.get("Healthcheck") or {}
        argv = probe_command(list(check.get("Test") or []))
        if argv is None:
            return
        if c.state.health is None or c.state.status != "running":
            c.state.health = {"Status": STARTING, "FailingStreak": 0, "Log": []}
        stop = threading.Event()
        with self._lock:
            previous = self._stops.pop(c.id, None)
            self._stops[c.id] = stop
        if previous is not None:
            previous.set()
        thread = threading.Thread(
            target=self._loop, args=(c, argv, check, stop), name=f"health-{c.id[:12]}", daemon=True
        )
        thread.start()

    def stopped(self, c: Container) -> None:
        with self._lock:
            stop = self._stops.pop(c.id, None)
        if stop is not None:
            stop.set()

    def close(self) -> None:
        with self._lock:
            stops = list(self._stops.values())
            self._stops.clear()
        for stop in stops:
            stop.set()

    def _loop(
        self, c: Container, argv: list[str], check: dict[str, Any], stop: threading.Event
    ) -> None:
        interval = _seconds(check.get("Interval"), DEFAULT_INTERVAL)
        timeout = _seconds(check.get("Timeout"), DEFAULT_TIMEOUT)
        start_period = _seconds(check.get("StartPeriod"), 0.0)
        start_interval = _seconds(check.get("StartInterval"), interval)
        retries = check.get("Retries") or DEFAULT_RETRIES
        started = parse_rfc3339(c.state.started_at) or time.time()
        while True:
            in_start = time.time() - started < start_period
            if stop.wait(start_interval if in_start else interval):
                return
            if not c.running or c.state.status == "paused":
                continue
            start_text = now_rfc3339()
            code, output = self._probe(c, argv, timeout)
            if stop.is_set():
                return
            self._record(c, start_text, code, output, retries, in_start)

    def _probe(self, c: Container, argv: list[str], timeout: float) -> tuple[int, str]:
        from moorage.engine.monitor_client import MonitorClient

        directory = os.path.join(self.containers.root, c.id)
        try:
            process = process_spec(directory, argv)
            sock = self.containers.monitor_socket(c)
        except (MoorageError, OSError) as exc:
            return -1, str(exc)
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            handle = MonitorClient(sock).exec(
                process, "health-" + secrets.token_hex(8), [devnull, write_end, write_end]
            )
        except MoorageError as exc:
            os.close(read_end)
            return -1, str(exc)
        finally:
            os.close(write_end)
            os.close(devnull)
        output = bytearray()
        deadline = time.monotonic() + timeout
        timed_out = False
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                ready, _, _ = select.select([read_end], [], [], left)
                if not ready:
                    continue
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                if len(output) < MAX_OUTPUT:
                    output += chunk[: MAX_OUTPUT - len(output)]
            if timed_out:
                with contextlib.suppress(OSError):
                    os.kill(handle.pid, signal.SIGKILL)
            try:
                code = handle.wait()
            except MoorageError as exc:
                return -1, str(exc)
        finally:
            os.close(read_end)
            handle.close()
        if timed_out:
            return -1, f"Health check exceeded timeout ({timeout:g}s)"
        return code, output.decode("utf-8", "replace")

    def _record(
        self,
        c: Container,
        start: str,
        code: int,
        output: str,
        retries: int,
        in_start_period: bool,
    ) -> None:
        health = dict(c.state.health or {"Status": STARTING, "FailingStreak": 0, "Log": []})
        entries = list(health.get("Log") or [])
        entries.append({"Start": start, "End": now_rfc3339(), "ExitCode": code, "Output": output})
        health["Log"] = entries[-KEEP_RESULTS:]
        before = health.get("Status")
        if code == 0:
            health["Status"] = HEALTHY
            health["FailingStreak"] = 0
        elif not in_start_period:
            health["FailingStreak"] = int(health.get("FailingStreak") or 0) + 1
            if health["FailingStreak"] >= retries:
                health["Status"] = UNHEALTHY
        if not c.running:
            return
        c.state.health = health
        self.containers.health_changed(c, before != health["Status"])
