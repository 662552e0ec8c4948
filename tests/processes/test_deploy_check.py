"""`manage.py check --deploy` with production settings reports nothing, django-axes' own checks included."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.helpers import REPO


def test_check_deploy_with_production_settings_is_clean():
    env = {
        **os.environ,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "x" * 30 + "production-like-secret-key-with-enough-entropy-0123456789",
        "JOBQUEUE_LOG_FORMAT": "text",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "axes." not in result.stdout + result.stderr  # no axes.W00x (backend, middleware, cache) warning
