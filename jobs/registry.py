"""The job-type registry: only names registered here can be enqueued from outside.

Types are registered with ``@job("email.send", ...)`` in an app's ``jobs.py`` or
``tasks.py``; ``autodiscover()`` imports those modules at startup (AppConfig.ready).
A name maps to a function object, never to an import path a client chose.

Handlers of other kinds (django.tasks tasks) reach the registry through a ``Resolver``
added with ``add_resolver()`` at start-up, so this module knows nothing of them.
"""

from __future__ import annotations

import inspect
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any, Protocol

from django.apps import apps
from django.conf import settings
from django.utils.module_loading import module_has_submodule

from jobs.backoff import Backoff
from jobs.errors import UnknownJobType

if TYPE_CHECKING:
    from jobs.context import JobContext
    from jobs.values import Claimed, Outcome

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}$")
BIND_CACHE_SIZE = 64  # argument shapes remembered per job type


@dataclass(frozen=True)
class JobType:
    """A registered handler and its defaults (each may be overridden per job where noted)."""

    name: str
    func: Callable[..., Any]
    queue: str | None = None  # per job: enqueue(queue=…)
    priority: int = 0  # per job
    max_attempts: int | None = None  # per job
    backoff: Backoff | None = None
    timeout: float | None = None  # per job
    sensitive: tuple[str, ...] = ()  # kwargs keys shown redacted everywhere
    description: str = ""
    signature: inspect.Signature | None = field(default=None, compare=False)
    # May an API client enqueue it by name? @job types yes; django.tasks tasks only with @task(api=True).
    api_allowed: bool = True
    result_ttl: float | None = None  # seconds a finished result stays readable; None = until pruned
    # Run the handler in a transaction that also records its success: its database writes commit if and
    # only if the job succeeds (workers.execution; docs/engine.md "Atomic jobs").
    atomic: bool = False
    # Hooks for handlers that are not plain functions (set by a Resolver, e.g. for django.tasks tasks); None
    # means call func(*args, **kwargs). on_finished learns the attempt's outcome and must not raise.
    call: Callable[[Claimed, JobContext], Any] | None = field(default=None, compare=False, repr=False)
    on_finished: Callable[[Claimed, JobContext, Outcome], None] | None = field(
        default=None, compare=False, repr=False
    )
    _bind_cache: dict[tuple[int, frozenset[str]], str | None] = field(
        default_factory=dict, compare=False, repr=False
    )

    def check_arguments(self, args: list, kwargs: dict) -> str | None:
        """Why the handler cannot take these arguments, or None when it can.

        Whether a call binds depends only on how many positional arguments there are and which
        keyword names, never on the values: the answer is remembered per shape (bulk enqueues
        repeat one shape thousands of times; a bounded cache, so odd shapes cannot grow it).
        """
        if self.signature is None:
            return None
        shape = (len(args), frozenset(kwargs))
        if shape in self._bind_cache:
            return self._bind_cache[shape]
        try:
            self.signature.bind(*args, **kwargs)
            problem = None
        except TypeError as exc:
            problem = str(exc)
        if len(self._bind_cache) < BIND_CACHE_SIZE:
            self._bind_cache[shape] = problem
        return problem

    def effective_backoff(self) -> Backoff:
        return self.backoff or Backoff(
            base=settings.JOBQUEUE_BACKOFF_BASE,
            max=settings.JOBQUEUE_BACKOFF_MAX,
            jitter=settings.JOBQUEUE_BACKOFF_JITTER,
        )


class Resolver(Protocol):
    """Job types for names no ``@job`` registered (the django.tasks adapter is one, added at start-up).

    A resolver only builds types; the registry registers what it returns, so a resolved name is a
    dict hit afterwards and can never shadow a type registered under it with another function.
    """

    def resolve(self, name: str) -> JobType | None:
        """The type named ``name``, or None. ``name`` is a caller's string: never import or call
        anything it merely names; resolve only objects that declared themselves."""
        ...

    def declared_names(self) -> Iterable[str]:
        """Every name this resolver could resolve now, so ``api_types()`` lists them unasked."""
        ...


_registry: dict[str, JobType] = {}
_resolvers: list[Resolver] = []
_resolve_lock = threading.Lock()  # check-then-register of a resolved type, across worker threads


def _as_backoff(value: Backoff | dict | float | None) -> Backoff | None:
    if value is None or isinstance(value, Backoff):
        return value
    if isinstance(value, dict):
        return Backoff(**value)
    return Backoff(base=float(value))


def _identity(func: Callable[..., Any]) -> tuple[str, str]:
    return (func.__module__, func.__qualname__)


def register(job_type: JobType) -> JobType:
    """Add a type; registering a different function under a taken name is an error."""
    if not NAME_RE.match(job_type.name):
        raise ValueError(f"invalid job type name {job_type.name!r}: use letters, digits and . _ : -")
    existing = _registry.get(job_type.name)
    # The same function imported twice (e.g. module reloaded) may re-register; another function may not.
    if existing is not None and _identity(existing.func) != _identity(job_type.func):
        raise ValueError(f"job type {job_type.name!r} is already registered by {existing.func!r}")
    _registry[job_type.name] = job_type
    return job_type


def job(
    name: str,
    *,
    queue: str | None = None,
    priority: int = 0,
    max_attempts: int | None = None,
    backoff: Backoff | dict | float | None = None,
    timeout: float | None = None,
    sensitive: tuple[str, ...] | list[str] = (),
    description: str | None = None,
    atomic: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as job type ``name``; the function itself is returned unchanged.

    ``atomic=True``: the handler's database writes (default database) commit together with the job's
    success, or not at all (a failure, timeout, cancel or lost lease rolls them back).
    """
    if not isinstance(atomic, bool):
        raise TypeError(f"job type {name!r}: atomic must be True or False, not {atomic!r}")

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        if atomic and inspect.iscoroutinefunction(func):
            raise TypeError(
                f"job type {name!r}: atomic=True needs a synchronous function (an async handler's ORM "
                "calls run on other threads, outside the job's transaction)"
            )
        register(
            JobType(
                name=name,
                func=func,
                queue=queue,
                priority=priority,
                max_attempts=max_attempts,
                backoff=_as_backoff(backoff),
                timeout=timeout,
                sensitive=tuple(sensitive),
                description=description if description is not None else inspect.getdoc(func) or "",
                signature=inspect.signature(func),
                atomic=atomic,
            )
        )
        return func

    return decorator


def get(name: str) -> JobType:
    job_type = find(name)
    if job_type is None:
        raise UnknownJobType(f"unknown job type {name!r}: no handler is registered under that name")
    return job_type


def add_resolver(resolver: Resolver) -> None:
    """Let ``find()`` ask ``resolver`` about names nothing registered (adding it again is a no-op)."""
    if resolver not in _resolvers:
        _resolvers.append(resolver)


def find(name: str) -> JobType | None:
    """The registered type, else the first resolver's type for ``name`` (registered when found)."""
    job_type = _registry.get(name)
    if job_type is not None:
        return job_type
    for resolver in _resolvers:
        resolved = resolver.resolve(name)
        if resolved is None or resolved.name != name:
            continue
        with _resolve_lock:
            try:
                return register(resolved)
            except ValueError:  # the name is taken by another function meanwhile: never shadow it
                return None
    return None


def api_types() -> list[JobType]:
    """The types an API client may enqueue: ``@job`` types, and resolvable ones that allow it
    (django.tasks tasks declared ``api=True``)."""
    for resolver in _resolvers:
        for name in resolver.declared_names():
            find(name)  # registers each declared type, so its api flag is known
    return [job_type for job_type in all_types() if job_type.api_allowed]


def all_types() -> list[JobType]:
    return sorted(_registry.values(), key=lambda t: t.name)


def unregister(name: str) -> None:
    """Remove a type (tests register temporary types)."""
    _registry.pop(name, None)


def autodiscover() -> None:
    """Import every installed app's job modules (JOBQUEUE_DISCOVER_MODULES, e.g. jobs.py, tasks.py)
    and the modules listed in JOBQUEUE_IMPORTS."""
    for app_config in apps.get_app_configs():
        for module_name in settings.JOBQUEUE_DISCOVER_MODULES:
            if module_has_submodule(app_config.module, module_name):
                import_module(f"{app_config.name}.{module_name}")
    for module_path in settings.JOBQUEUE_IMPORTS:
        import_module(module_path)
