#!/usr/bin/env python
"""Django's command-line utility for administrative tasks.

Beside a running ``make run``, DATABASE_URL/REDIS_URL default to its embedded servers (read from
``.local/dev/env``, which it writes while it runs); variables set in the environment always win.
A command that cannot reach PostgreSQL or Redis prints one line saying what was tried and what to
set, and exits 1, instead of a traceback.
"""

import os
import sys
from urllib.parse import urlsplit, urlunsplit

UNREACHABLE_EXIT = 1


def _use_dev_servers() -> None:
    from jobqueue_site.devrun import dev_env

    for name, value in dev_env().items():
        os.environ.setdefault(name, value)  # an explicit (even empty) variable wins


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _hint(name: str) -> str:
    source = f"from {name}" if os.environ.get(name) else f"{name} is unset, so the settings default"
    return (
        f"({source}). Set {name} to a running server, or start `make run` in this checkout "
        "(manage.py then finds its servers through .local/dev/env)."
    )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__


def _unreachable(exc: BaseException) -> str | None:
    """One line if ``exc`` means PostgreSQL or Redis cannot be reached, else None (a real error)."""
    import redis
    from django.conf import settings
    from django.db import OperationalError, connections

    chain = [exc]
    while (cause := chain[-1].__cause__ or chain[-1].__context__) is not None and len(chain) < 10:
        chain.append(cause)
    redis_down = redis.ConnectionError | redis.TimeoutError
    exc = next((e for e in chain if isinstance(e, redis_down | OperationalError)), exc)
    if isinstance(exc, redis_down):
        where = _redacted(settings.REDIS_URL)
        return f"manage.py: cannot reach Redis at {where}: {_first_line(exc)} {_hint('REDIS_URL')}"
    if isinstance(exc, OperationalError):
        db = connections["default"]
        try:  # an OperationalError of a query on a working connection is not ours to explain
            db.close()
            db.ensure_connection()
        except OperationalError:
            pass
        else:
            return None
        params = db.settings_dict
        host = params.get("HOST") or "localhost"
        where = host if host.startswith("/") else f"{host}:{params.get('PORT') or 5432}"
        target = f"postgresql://{params.get('USER') or ''}@{where}/{params.get('NAME')}"
        return f"manage.py: cannot reach PostgreSQL at {target}: {_first_line(exc)} {_hint('DATABASE_URL')}"
    return None


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobqueue_site.settings")
    _use_dev_servers()
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except Exception as exc:
        message = _unreachable(exc)
        if message is None:
            raise
        sys.stderr.write(message + "\n")
        sys.exit(UNREACHABLE_EXIT)


if __name__ == "__main__":
    main()
