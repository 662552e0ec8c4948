"""A worker process that keeps dying is restarted, each time after a longer delay.

README ("Nothing is lost"): "a worker process dies | the supervisor starts a new one (with backoff if it
keeps dying)". The rule (``Supervisor._check``): a process that dies within 10 s of its start counts
one more failure in a row; the first death is restarted at once, the n-th in a row (n >= 2) after
``min(2 ** (n - 1), 30)`` s. Deaths here are SIGKILLs from the test, the way a segfault or the OOM
killer ends a process; the delays are measured from the supervisor's own log lines.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from datetime import datetime

import pytest

from jobs import services
from jobs.models import Job, JobStatus
from tests.support.helpers import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

STARTED = re.compile(r"^worker process (\d+) started \(slot 0\)$")
DIED = re.compile(r"^worker process (\d+) died \(exit code (-?\d+)\); restarting it$")
DEATHS = 4  # restart delays 0, 2, 4, 8 s


def _events(log: str) -> list[tuple[str, int, float, str]]:
    """(``started``/``died``, pid, epoch seconds, exit code) from the supervisor's JSON log lines."""
    events = []
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:  # not JSON, or a line still being written
            continue
        if not isinstance(entry, dict) or entry.get("logger") != "workers.supervisor":
            continue
        at = datetime.fromisoformat(entry["ts"]).timestamp()
        if match := STARTED.match(entry["msg"]):
            events.append(("started", int(match[1]), at, ""))
        elif match := DIED.match(entry["msg"]):
            events.append(("died", int(match[1]), at, match[2]))
    return events


def test_a_worker_process_that_keeps_dying_is_restarted_with_growing_delays(start_worker):
    worker = start_worker("--queues", "default", "--processes", "1", env={"JOBQUEUE_LOG_FORMAT": "json"})
    killed: list[int] = []
    deadline = time.monotonic() + 90
    while len(killed) < DEATHS:
        assert time.monotonic() < deadline, f"only {len(killed)} restarts in 90s:\n{worker.log()}"
        assert worker.popen.poll() is None, f"the supervisor itself exited:\n{worker.log()}"
        for kind, pid, _at, _code in _events(worker.log()):
            if kind == "started" and pid not in killed:
                os.kill(pid, signal.SIGKILL)  # dies moments after it started: a crash loop
                killed.append(pid)
        time.sleep(0.02)

    # The replacement for the last death comes after the longest delay; then it is left alone.
    events = wait_until(
        lambda: (e := _events(worker.log())) and sum(kind == "started" for kind, *_ in e) == DEATHS + 1 and e,
        timeout=60,
        what="the process after the last death",
    )
    started = [(pid, at) for kind, pid, at, _code in events if kind == "started"]
    died = [(pid, at, code) for kind, pid, at, code in events if kind == "died"]
    assert [pid for pid, _at in started[:DEATHS]] == killed
    assert [pid for pid, _at, _code in died] == killed
    assert {code for _pid, _at, code in died} == {str(-signal.SIGKILL)}

    # From each death being noticed to the next start: the backoff (plus at most a 0.2 s check interval).
    delays = [started[i + 1][1] - died[i][1] for i in range(DEATHS)]
    expected = [0, 2, 4, 8]
    for delay, wanted in zip(delays, expected, strict=True):
        assert wanted - 0.1 <= delay <= wanted + 2.5, f"restart delays {delays}, expected about {expected}"
    assert delays == sorted(delays) and delays[-1] > delays[1] > delays[0], f"delays do not grow: {delays}"

    # The process that was left alone stays up and does the work.
    job = services.enqueue("test.ok", kwargs={"value": "after the crash loop"})
    wait_until(lambda: Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED, timeout=30, what="a job")
    assert worker.children() == [started[-1][0]]
    assert worker.popen.poll() is None
