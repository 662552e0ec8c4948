"""Browser-test helpers: a real daphne server as a subprocess, Debian's chromium driven by Playwright.

The server is a separate process (not an in-process live server) so a test can stop and restart it
exactly as an operator's dashboard would see an outage. It runs with the test's environment: the
test database, the test's Redis prefix (so its channel layer is ``<prefix>:channels``, the one the
workers and the test process use).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from jobqueue_site.devrun import daphne_command
from tests.support.helpers import REPO  # noqa: E402

SKIP_REASON = (
    "chromium not installed (no /usr/bin/chromium, no `chromium` on PATH): browser tests skipped; "
    "`apt-get install chromium` (what .ci/run does) to run them"
)
CI_MISSING_CHROMIUM = (
    "CI is set but chromium is not installed (no /usr/bin/chromium, no `chromium` on PATH): .ci/run "
    "installs it, so its install failed; browser tests must run in CI, not skip"
)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """Debian's chromium (what .ci/run installs); never a downloaded browser."""
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    return shutil.which("chromium")


def running_in_ci() -> bool:
    """CI runners (and .ci/run) set ``CI=true``."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def skip_browser_tests() -> bool:
    """Skip only outside CI: in CI a missing chromium is an error (``launch_chromium`` fails then)."""
    return chromium_path() is None and not running_in_ci()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Daphne:
    """``daphne -b 127.0.0.1 -p PORT jobqueue_site.asgi:application``, stoppable and restartable."""

    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    popen: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        with self.log_path.open("a") as log:  # the child keeps its own descriptor
            self.popen = subprocess.Popen(
                daphne_command("127.0.0.1", self.port),
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise AssertionError(f"daphne exited with {self.popen.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.5):
                return
            time.sleep(0.1)
        raise AssertionError(f"daphne did not listen on {self.port} within {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        """SIGKILL: the page must cope with a server that vanishes without a goodbye."""
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def daphne_server(env: dict[str, str], tmp_path: Path) -> Iterator[Daphne]:
    server = Daphne(env={**env, "DJANGO_DEBUG": "1"}, log_path=tmp_path / "daphne.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        print(f"--- daphne log ({server.log_path}) ---\n{server.log()[-20000:]}")  # shown for failures


def launch_chromium(playwright: Any) -> Any:
    executable = chromium_path()
    if executable is None:
        if running_in_ci():
            pytest.fail(CI_MISSING_CHROMIUM, pytrace=False)
        pytest.skip(SKIP_REASON)
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)


def session_cookie(user: Any, url: str) -> dict[str, Any]:
    """A logged-in session for ``user`` (Django's own login, stored in the test database)."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    return {
        "name": settings.SESSION_COOKIE_NAME,
        "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
        "url": url,
    }
