"""Small helpers shared by the tests: polling PostgreSQL and driving real worker processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]


def claim_as(worker: str, broker: Any, job: Any) -> Any:
    """Pop and claim ``job`` as ``worker`` would (dequeue script, then the PostgreSQL claim)."""
    from jobs import dispatch, services

    dispatch.flush()  # enqueue's push runs on the pusher thread
    popped = broker.dequeue([job.queue], 1, 60_000, worker).jobs
    assert [p.id for p in popped] == [str(job.id)], "another ready job is in the way: create queued jobs last"
    (claimed,) = services.settle(broker, [], popped, worker)
    return claimed


def wait_until[T](
    predicate: Callable[[], T], timeout: float = 20.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


@dataclass
class WorkerProcess:
    """A real `manage.py runworker` process (a supervisor with its children) in its own session."""

    popen: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> list[int]:
        import psutil

        try:
            return [child.pid for child in psutil.Process(self.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then wait for a graceful exit."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the whole process group (supervisor and children)."""
        if self.popen.poll() is None or self.children():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)


class ManagePyProcesses:
    """Starts `manage.py COMMAND ARGS…` as real processes, each in its own session; ``kill_all`` ends them."""

    def __init__(self, command: str, env: dict[str, str], log_dir: Path) -> None:
        self.command, self.env, self.log_dir = command, env, log_dir
        self.started: list[WorkerProcess] = []

    def start(self, *args: str, env: dict[str, str] | None = None) -> WorkerProcess:
        log_path = self.log_dir / f"{self.command}-{len(self.started)}.log"
        with log_path.open("w") as log:  # the child keeps its own descriptor
            popen = subprocess.Popen(
                [sys.executable, "manage.py", self.command, *args],
                cwd=REPO,
                env={**self.env, **(env or {})},
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        process = WorkerProcess(popen, log_path)
        self.started.append(process)
        return process

    def kill_all(self) -> None:
        for process in self.started:
            process.kill()
