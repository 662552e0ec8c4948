"""Typed readers for environment variables, used only by settings.py."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def database_from_url(url: str) -> dict:
    """Turn ``postgresql://user:pass@host:port/name?host=/socket/dir`` into DATABASES["default"].

    The ``host`` query parameter (a unix-socket directory, as libpq and the
    embedded server use) wins over the network location.
    """
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ImproperlyConfigured(f"DATABASE_URL must be a postgresql:// URL, got scheme {parts.scheme!r}")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    host = query.pop("host", None) or unquote(parts.hostname or "")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")) or "postgres",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(parts.port or ""),
        "OPTIONS": query,
    }


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def env_durations(name: str, default: str) -> dict[str, float]:
    """``key=duration,…`` from the environment (e.g. ``succeeded=7d,failed=30d``), in seconds.

    An empty value means no entries. Key names are checked where they are used (a system check).
    """
    raw = os.environ.get(name)
    return parse_durations(default if raw is None else raw, name)


def parse_durations(raw: str, name: str) -> dict[str, float]:
    """Parse ``key=duration,…`` (units s, m, h, d, w; a bare number is seconds); ``name`` labels errors."""
    result: dict[str, float] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        key, sep, value = (text.strip() for text in item.partition("="))
        if not sep or not key or not value:
            raise ImproperlyConfigured(f"{name}: expected key=duration such as succeeded=7d, got {item!r}")
        number, unit = value[:-1], value[-1].lower()
        if unit not in _DURATION_UNITS:
            number, unit = value, "s"
        try:
            seconds = float(number) * _DURATION_UNITS[unit]
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: {key}={value!r} is not a duration; use a number with s, m, h, d or w (e.g. 7d)"
            ) from None
        if not seconds > 0 or seconds == float("inf"):
            raise ImproperlyConfigured(f"{name}: {key}={value!r} must be a positive duration")
        if key in result:
            raise ImproperlyConfigured(f"{name}: {key} is given twice")
        result[key] = seconds
    return result
