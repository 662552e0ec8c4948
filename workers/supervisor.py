"""The parent of worker processes: forks them, restarts the ones that die, replaces the ones that hang.

A Python thread cannot be killed, so a handler that ignores its timeout or
cancel is stopped here: its process asks to be replaced (exit code 3) after
settling what it can, or, if the process stops reporting altogether, the
supervisor kills it and the lease reaper recovers its jobs.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized

from django.db import connections

from workers.worker import EXIT_REPLACE, Worker, WorkerConfig

logger = logging.getLogger("workers.supervisor")

_ctx = multiprocessing.get_context("fork")


def _child_main(config: WorkerConfig, alive: Synchronized) -> None:
    """Entry point of a forked worker process."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    parent = os.getppid()
    last = 0.0
    worker: Worker | None = None

    def beat() -> None:
        nonlocal last
        now = time.time()
        if now - last >= 0.5:
            alive.value = now
            last = now
            # A supervisor killed with SIGKILL cannot stop its children: an orphan would go on taking
            # jobs unsupervised (no restarts, no hard timeouts). It drains and exits instead.
            if os.getppid() != parent and worker is not None and not worker.stopping.is_set():
                logger.warning("supervisor (pid %d) is gone: finishing running jobs, then exiting", parent)
                worker.stopping.set()

    code = 1
    try:
        worker = Worker(config, alive=beat)
        code = worker.run()
    except Exception:  # noqa: BLE001 - log whatever took the process down, then let the supervisor act
        logger.exception("worker process crashed")
    finally:
        logging.shutdown()
        os._exit(code)


@dataclass
class Slot:
    number: int
    process: multiprocessing.process.BaseProcess | None = None
    alive: Synchronized = field(default_factory=lambda: _ctx.Value("d", 0.0, lock=False))
    started: float = 0.0
    failures: int = 0
    restart_at: float = 0.0
    finished: bool = False


class Supervisor:
    """Keeps ``processes`` worker processes running until SIGTERM/SIGINT (with burst: until they finish)."""

    def __init__(self, config: WorkerConfig, processes: int, *, stall_timeout: float | None = None) -> None:
        self.config = config
        self.slots = [Slot(number=i) for i in range(processes)]
        self.stopping = False
        self.forced = False
        # A process whose loop has not reported for this long is hung beyond cooperative help.
        self.stall_timeout = stall_timeout or max(60.0, config.lease_seconds * 2)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        logger.info("supervisor %d starting %d worker process(es)", os.getpid(), len(self.slots))
        for slot in self.slots:
            self._spawn(slot)
        while not self.stopping:
            self._check()
            if self.config.burst and all(slot.finished for slot in self.slots):
                return 0
            time.sleep(0.2)
        return self._stop_all()

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.stopping:
            self.forced = True
            logger.warning("second signal: killing worker processes now")
            for slot in self.slots:
                self._kill(slot)
            return
        self.stopping = True
        logger.info("supervisor got %s: stopping workers gracefully", signal.Signals(signum).name)
        for slot in self.slots:
            # A started process has a pid (None only before start()), and is_alive() implies started.
            if slot.process is not None and slot.process.is_alive() and slot.process.pid is not None:
                os.kill(slot.process.pid, signal.SIGTERM)

    def _spawn(self, slot: Slot) -> None:
        connections.close_all()  # never share a database socket with a child
        slot.alive.value = time.time()
        slot.process = _ctx.Process(
            target=_child_main, args=(self.config, slot.alive), name=f"worker-{slot.number}"
        )
        slot.process.start()
        slot.started = time.monotonic()
        logger.info("worker process %d started (slot %d)", slot.process.pid, slot.number)

    def _check(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            process = slot.process
            if slot.finished:
                continue
            if process is not None and process.is_alive():
                if time.time() - slot.alive.value > self.stall_timeout:
                    logger.error(
                        "worker process %d stopped reporting for %.0fs: killing it",
                        process.pid,
                        self.stall_timeout,
                    )
                    self._kill(slot)
                continue
            if process is not None:
                code = process.exitcode
                process.join(0)
                slot.process = None
                if code == 0 and self.config.burst:
                    slot.finished = True
                    continue
                if code == EXIT_REPLACE:
                    logger.warning("worker process %d asked to be replaced; starting a new one", process.pid)
                    slot.failures = 0
                else:
                    lived = now - slot.started
                    slot.failures = slot.failures + 1 if lived < 10 else 1
                    logger.error("worker process %d died (exit code %s); restarting it", process.pid, code)
                delay = min(2 ** (slot.failures - 1), 30) if slot.failures > 1 else 0
                slot.restart_at = now + delay
            if slot.process is None and now >= slot.restart_at and not self.stopping:
                self._spawn(slot)

    def _kill(self, slot: Slot) -> None:
        if slot.process is not None and slot.process.is_alive() and slot.process.pid is not None:
            os.kill(slot.process.pid, signal.SIGKILL)

    def _stop_all(self) -> int:
        deadline = time.monotonic() + self.config.shutdown_grace + 10
        for slot in self.slots:
            if slot.process is None:
                continue
            slot.process.join(max(deadline - time.monotonic(), 0))
            if slot.process.is_alive():
                logger.error("worker process %d did not stop in time: killing it", slot.process.pid)
                self._kill(slot)
                slot.process.join(5)
        logger.info("supervisor stopped")
        return 1 if self.forced else 0
