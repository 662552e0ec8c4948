"""`manage.py` beside `make run` finds its embedded servers, and an unreachable server is one clear line.

`make run` (jobqueue_site.devrun) writes its DATABASE_URL/REDIS_URL to `.local/dev/env` while it runs;
`manage.py` reads that file when those variables are unset. The tests point both at a file of their own
(JOBQUEUE_DEV_ENV_FILE) so that a developer's real `make run` is never touched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from tests.support.helpers import REPO

pytestmark = pytest.mark.django_db(transaction=True)

WRITER = """
import sys
from jobqueue_site import devrun
devrun.write_dev_env()   # what `make run` does once its children are up
print("written", flush=True)
sys.stdin.read()         # "running" until the test closes stdin
devrun.remove_dev_env()  # what `make run` does when it stops
"""


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without DATABASE_URL/REDIS_URL: a fresh terminal beside `make run`."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    return env | {"JOBQUEUE_IMPORTS": "tests.support.jobtypes", "PYTHONUNBUFFERED": "1"} | extra


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def test_manage_py_in_a_fresh_terminal_finds_the_servers_of_a_running_make_run(worker_env, tmp_path: Path):
    env_file = tmp_path / "env"
    get_user_model().objects.create_user("admin", password="unused-here")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, "devrun"],  # "devrun" in its command line, like `make run`'s
        cwd=REPO,
        env=worker_env | {"JOBQUEUE_DEV_ENV_FILE": str(env_file)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "written\n"
        assert oct(env_file.stat().st_mode & 0o777) == "0o600"  # URLs may carry passwords
        env = _clean_env(JOBQUEUE_DEV_ENV_FILE=str(env_file))

        shown = _manage("showmigrations", "jobs", env=env)
        assert shown.returncode == 0, shown.stderr
        assert "[X] 0001_initial" in shown.stdout

        created = _manage("drf_create_token", "admin", env=env)
        assert created.returncode == 0, created.stderr
        assert Token.objects.get(user__username="admin").key in created.stdout

        # An explicit variable always wins over the file.
        explicit = _manage(
            "showmigrations", "jobs", env=env | {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/jobqueue"}
        )
        assert explicit.returncode == 1 and "127.0.0.1:1" in explicit.stderr
    finally:
        writer.communicate(timeout=30)
    assert writer.returncode == 0
    assert not env_file.exists()  # removed when `make run` stops


def test_a_file_left_by_a_killed_make_run_is_ignored(worker_env, tmp_path: Path):
    env_file = tmp_path / "env"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, "devrun"],
        cwd=REPO,
        env=worker_env | {"JOBQUEUE_DEV_ENV_FILE": str(env_file)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None and writer.stdout.readline() == "written\n"
    writer.kill()
    writer.communicate(timeout=30)
    assert env_file.exists()  # killed: it could not clean up
    unreachable = "postgresql://postgres@127.0.0.1:1/jobqueue"
    result = _manage(
        "shell", "-c", "import os; print(os.environ['DATABASE_URL'])",
        env=_clean_env(JOBQUEUE_DEV_ENV_FILE=str(env_file), DATABASE_URL=unreachable),
    )  # fmt: skip
    assert result.stdout.strip().splitlines()[-1] == unreachable
    stale = _manage(
        "shell", "-c", "import os; print(os.environ.get('DATABASE_URL', 'unset'))",
        env=_clean_env(JOBQUEUE_DEV_ENV_FILE=str(env_file)),
    )  # fmt: skip
    assert stale.returncode == 0, stale.stderr
    assert stale.stdout.strip().splitlines()[-1] == "unset"


def test_unreachable_postgresql_is_one_line_naming_the_url_and_what_to_set(tmp_path: Path):
    env = _clean_env(
        JOBQUEUE_DEV_ENV_FILE=str(tmp_path / "none"),
        DATABASE_URL="postgresql://ada:s3cret@127.0.0.1:1/jobqueue",
    )
    for args in (["showmigrations"], ["drf_create_token", "admin"], ["migrate", "--noinput"]):
        result = _manage(*args, env=env)
        assert result.returncode == 1, (args, result.stderr)
        assert "Traceback" not in result.stderr
        (line,) = result.stderr.strip().splitlines()
        expected = "manage.py: cannot reach PostgreSQL at postgresql://ada@127.0.0.1:1/jobqueue: "
        assert line.startswith(expected)
        assert "Set DATABASE_URL" in line and "make run" in line
        assert "s3cret" not in line


def test_unreachable_redis_is_one_line_naming_the_url_and_what_to_set(worker_env, tmp_path: Path):
    env = worker_env | {
        "JOBQUEUE_DEV_ENV_FILE": str(tmp_path / "none"),
        "REDIS_URL": "redis://:s3cret@127.0.0.1:1/0",
    }
    # (runworker and runscheduler ride out a Redis outage, logging and retrying; a command that needs
    # Redis at once gets the one line)
    result = _manage("shell", "-c", "from jobs.dispatch import get_broker; get_broker().now_ms()", env=env)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [entry for entry in result.stderr.strip().splitlines() if entry.startswith("manage.py:")]
    assert line.startswith("manage.py: cannot reach Redis at redis://:***@127.0.0.1:1/0: ")
    assert "Set REDIS_URL" in line and "s3cret" not in line
