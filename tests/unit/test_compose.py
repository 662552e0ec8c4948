"""docker-compose.yml and the Dockerfile only name commands and settings that really exist.

Nothing here starts Docker: the point is to catch drift (a renamed management command, a wrong
ASGI path, a missing healthcheck) in `make test` instead of at deploy time.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from daphne.cli import CommandLineInterface
from django.apps import apps
from django.conf import settings
from django.core.management import CommandError, get_commands, load_command_class

from tests.support.helpers import REPO  # noqa: E402

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
APP_SERVICES = ["migrate", "web", "worker", "scheduler"]  # built from our Dockerfile
BACKING_SERVICES = ["postgres", "redis"]
SERVERS = ["postgres", "redis", "web"]  # long-running and reachable: they need a healthcheck


def command_of(service: str) -> list[str]:
    command = SERVICES[service]["command"]
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def project_app_dirs() -> dict[str, str]:
    """App name -> its top-level directory, for the apps that live in this repository."""
    return {
        config.name: Path(config.path).name
        for config in apps.get_app_configs()
        if Path(config.path).parent == REPO
    }


def assert_real_entry_point(argv: list[str]) -> None:
    """A `python manage.py X` command that Django knows, or daphne serving an ASGI callable."""
    if argv[:2] == ["python", "manage.py"]:
        name = argv[2]
        assert name in get_commands(), f"`manage.py {name}` is not a management command"
    elif argv[0] == "daphne":
        try:
            options = CommandLineInterface().parser.parse_args(argv[1:])
        except SystemExit:
            pytest.fail(f"daphne rejects the arguments {argv[1:]}")
        module_name, _, attr = options.application.partition(":")
        application = getattr(importlib.import_module(module_name), attr)
        assert inspect.iscoroutinefunction(application) or inspect.iscoroutinefunction(
            type(application).__call__
        ), f"{options.application} is not an ASGI application (no async __call__)"
    else:
        pytest.fail(f"unknown entry point {argv}: expected `python manage.py ...` or `daphne ...`")


def test_compose_defines_every_service_of_the_stack() -> None:
    assert set(APP_SERVICES + BACKING_SERVICES) <= set(SERVICES)


def test_every_long_running_server_has_a_healthcheck() -> None:
    for service in SERVERS:
        healthcheck = SERVICES[service].get("healthcheck", {})
        assert healthcheck.get("test"), f"{service} has no healthcheck"
    assert "pg_isready" in str(SERVICES["postgres"]["healthcheck"]["test"])
    assert "ping" in SERVICES["redis"]["healthcheck"]["test"]
    assert "/admin/login/" in str(SERVICES["web"]["healthcheck"]["test"])


@pytest.mark.parametrize("service", APP_SERVICES)
def test_every_compose_service_runs_a_real_entry_point(service: str) -> None:
    assert "build" in SERVICES[service], f"{service} should run our image"
    assert_real_entry_point(command_of(service))


@pytest.mark.parametrize("service", [s for s in APP_SERVICES if command_of(s)[:2] == ["python", "manage.py"]])
def test_management_commands_accept_the_options_compose_passes(service: str) -> None:
    argv = command_of(service)
    name, options = argv[2], argv[3:]
    app_name = get_commands().get(name)
    assert app_name is not None, f"`manage.py {name}` is not a management command"
    if not app_name.startswith("django.") and app_name not in project_app_dirs():
        pytest.fail(
            f"compose runs `manage.py {name}`, which resolves to the {app_name!r} app's command, "
            f"not jobqueue's: list the app that defines jobqueue's `{name}` before {app_name!r} "
            "in INSTALLED_APPS"
        )
    parser = load_command_class(app_name, name).create_parser("manage.py", name)
    try:
        parser.parse_args(options)
    except CommandError as exc:
        pytest.fail(f"`manage.py {name}` rejects {options}: {exc}")


def test_app_services_start_only_after_healthy_backends_and_migrations() -> None:
    assert SERVICES["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for service in ["web", "worker", "scheduler"]:
        depends_on = SERVICES[service]["depends_on"]
        for backend in BACKING_SERVICES:
            assert depends_on[backend]["condition"] == "service_healthy", (service, backend)
        assert depends_on["migrate"]["condition"] == "service_completed_successfully", service


def test_app_services_run_with_production_settings_and_a_required_secret() -> None:
    for service in APP_SERVICES:
        env = SERVICES[service]["environment"]
        assert env["DJANGO_DEBUG"] == "0"
        assert env["DJANGO_SECRET_KEY"].startswith("${DJANGO_SECRET_KEY:?"), "the secret must be required"
        assert env["DATABASE_URL"].startswith("postgresql://") and "@postgres:" in env["DATABASE_URL"]
        assert env["REDIS_URL"].startswith("redis://redis:")
        assert "DJANGO_ALLOWED_HOSTS" in env


def test_workers_are_replicated_and_get_time_to_finish_jobs_on_stop() -> None:
    worker = SERVICES["worker"]
    assert worker["deploy"]["replicas"] == 2
    grace = re.fullmatch(r"(\d+)s", worker["stop_grace_period"])
    assert grace, "stop_grace_period should be in seconds, e.g. 40s"
    assert int(grace[1]) > settings.JOBQUEUE_SHUTDOWN_GRACE, "docker would SIGKILL before jobs finish"


def test_redis_persists_with_append_only_file() -> None:
    assert "--appendonly" in command_of("redis") and "yes" in command_of("redis")
    assert any(volume.endswith(":/data") for volume in SERVICES["redis"]["volumes"])


def test_dockerfile_default_command_is_the_web_server_in_exec_form() -> None:
    instructions = dockerfile_instructions()
    assert not [args for keyword, args in instructions if keyword == "ENTRYPOINT"], (
        "an ENTRYPOINT would be prepended to every compose command"
    )
    cmds = [args for keyword, args in instructions if keyword == "CMD"]
    assert cmds, "the Dockerfile should have a CMD"
    cmd = json.loads(cmds[-1])  # exec form: daphne is PID 1 and receives SIGTERM itself
    assert_real_entry_point(cmd)
    assert cmd == command_of("web")


def test_dockerfile_builds_a_non_root_image_with_collected_static_files() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.12-slim")
    runs = " ".join(args for keyword, args in instructions if keyword == "RUN")
    installed = re.findall(r"pip install (?:--[\w-]+ )*-r (\S+)", runs)
    assert installed, "the image installs no requirements file"
    copies = " ".join(args for keyword, args in instructions if keyword == "COPY")
    for name in installed:
        assert (REPO / name).is_file(), f"the Dockerfile installs {name}, which is not in the repository"
        assert name in copies.split(), f"{name} is installed but never copied into the image"
    assert "collectstatic --noinput" in runs
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users and users[-1] not in {"root", "0"}


def test_dockerfile_copies_every_project_app() -> None:
    """The image copies apps one by one; a new app must be added there too."""
    copied = {
        Path(part.rstrip("/")).parts[0]
        for keyword, args in dockerfile_instructions()
        if keyword == "COPY"
        for part in args.split()[:-1]
    }
    local_apps = set(project_app_dirs().values())
    template_dirs = {Path(d).relative_to(REPO).parts[0] for t in settings.TEMPLATES for d in t["DIRS"]}
    needed = local_apps | template_dirs | {"manage.py", "jobqueue_site"}
    assert needed <= copied, f"not copied into the image: {sorted(needed - copied)}"
