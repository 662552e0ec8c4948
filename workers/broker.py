"""Redis side of the engine: the dispatch index (sorted sets) and its Lua transitions.

PostgreSQL is the truth; everything here is a rebuildable hint. Each state change in Redis is one Lua script
in ``workers/lua/`` (listed in ``SCRIPTS``), called by SHA with EVALSHA outside pipelines. Every script is
O(batch): the ``*_args()`` builders never receive more than ``MAX_BATCH`` ids (the ``Broker`` methods chunk
their input), scripts that scan use LIMIT, and "now" always comes from Redis ``TIME`` (``_now.lua``, spliced
in where a script says ``-- @include _now.lua``).

Every Redis key and channel name is built here, by the broker, including those of the engine's helpers:
metrics counters, the stats cache, the API throttle, the scheduler's leader lock and wake channel. Callers
use the broker's methods, so the key layout (and its Redis Cluster hash tag) lives in one module.

This is a leaf module: it imports redis-py only, never Django; configuration comes through the constructor.
The pure ``*_keys()`` / ``*_args()`` builders define each script's KEYS/ARGV layout so it can be tested
without Redis; the order must match the header comment of the script.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import redis
from redis.client import PubSub
from redis.exceptions import NoScriptError

__all__ = [
    "MAX_BATCH",
    "SCRIPTS",
    "Broker",
    "DequeueResult",
    "ExtendResult",
    "Placement",
    "Popped",
    "ThrottleResult",
    "ready_score",
    "script_source",
]

MAX_BATCH = 1000
"""Most ids one script call handles (invariant 5): bounds the time Redis spends in one script."""

PRIORITY_MIN, PRIORITY_MAX = -100, 100
SEQ_LIMIT = 10**13
"""``seq`` must stay below this so priority bands never overlap (and scores stay exact in a double)."""

WORKER_PRUNE_MS = 24 * 3600 * 1000
"""A worker silent this long leaves the workers ZSET (its info hash expired long before)."""

CONTROL_TTL_MS = 10 * 60 * 1000
"""A worker's control list expires this long after its last push: one whose worker died cleans itself up."""

SCHEDULES_CHANNEL = "schedules"
"""Pub/sub channel (under the key base) on which schedule changes wake the schedulers."""

LUA_DIR = Path(__file__).resolve().parent / "lua"

SCRIPTS: dict[str, str] = {
    "enqueue": "enqueue.lua",
    "dequeue": "dequeue.lua",
    "ack": "ack.lua",
    "retry": "retry.lua",
    "give_back": "give_back.lua",
    "extend_lease": "extend_lease.lua",
    "reap_expired": "reap_expired.lua",
    "cancel": "cancel.lua",
    "reconcile": "reconcile.lua",
    "epoch": "epoch.lua",
    "heartbeat": "heartbeat.lua",
    "forget_worker": "forget_worker.lua",
    "unlock": "unlock.lua",
    "renew_lock": "renew_lock.lua",
    "throttle": "throttle.lua",
}
"""Script name -> file in ``workers/lua/``: the one table of every Redis transition."""

INCLUDE_RE = re.compile(r"^-- @include (?P<file>[\w.]+\.lua)$", re.MULTILINE)
"""A line ``-- @include _now.lua`` is replaced by that file's code when the script is loaded.

The marker is a Lua comment, so a file is still valid Lua on its own; the included code is joined onto the
marker's one line, so line numbers in Redis error messages match the files.
"""


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a job should be in Redis now: ready, or delayed when ``run_at_ms`` is in the future."""

    id: str
    queue: str
    ready_score: int
    run_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Popped:
    """A leased job id; ``token`` is the fencing token every later call about this lease must present."""

    id: str
    queue: str
    token: str


@dataclass(frozen=True, slots=True)
class DequeueResult:
    """Leased jobs, plus when the earliest delayed job of these queues is due (bounds the next wait)."""

    jobs: list[Popped]
    next_due_ms: int | None


@dataclass(frozen=True, slots=True)
class ExtendResult:
    """Leases the caller no longer owns, and leases whose job was asked to cancel."""

    lost: list[str]
    cancel: list[str]


@dataclass(frozen=True, slots=True)
class ThrottleResult:
    """One sliding-window admission: ``wait_ms`` 0 if admitted, else ms until a slot frees (= ``reset_ms``).

    ``remaining`` is how many more the window admits now; ``reset_ms`` when its oldest admission leaves.
    """

    wait_ms: int
    remaining: int
    reset_ms: int

    @property
    def admitted(self) -> bool:
        return self.wait_ms == 0


def ready_score(priority: int, seq: int) -> int:
    """Score in a ready ZSET: ZPOPMIN yields the highest priority first, then FIFO by ``seq`` (invariant 8).

    Sequence, not clock: jobs enqueued in the same millisecond still keep their order.
    """
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise ValueError(f"priority must be within {PRIORITY_MIN}..{PRIORITY_MAX}, got {priority}")
    if not 0 < seq < SEQ_LIMIT:
        raise ValueError(f"seq must be a positive integer below 10**13, got {seq}")
    return (100 - priority) * SEQ_LIMIT + seq


# --- key layout -------------------------------------------------------------------------------------------


def key_base(prefix: str) -> str:
    """``"<prefix>:{jq}:"``: the shared hash tag keeps every key in one Redis Cluster slot."""
    return f"{prefix}:{{jq}}:"


def make_key(prefix: str, *parts: str) -> str:
    """``make_key("jq", "ready", "default")`` -> ``"jq:{jq}:ready:default"``."""
    return key_base(prefix) + ":".join(parts)


def _lease_keys(prefix: str) -> list[str]:
    return [make_key(prefix, name) for name in ("leases", "lease_tokens", "lease_queues", "lease_workers")]


def _queue_index(queues: Iterable[str]) -> dict[str, int]:
    """Distinct queues in first-seen order -> 1-based index used in ARGV to address their KEYS."""
    index: dict[str, int] = {}
    for queue in queues:
        index.setdefault(queue, len(index) + 1)
    return index


# --- pure KEYS / ARGV builders (one pair per script; layouts documented in the script headers) -------


def enqueue_keys(prefix: str, queue: str) -> list[str]:
    return [
        make_key(prefix, "ready", queue),
        make_key(prefix, "delayed", queue),
        make_key(prefix, "marker", queue),
        make_key(prefix, "ready_scores"),
    ]


def enqueue_args(placements: Sequence[Placement]) -> list[str]:
    """Triples (id, ready_score, run_at_ms or ""), all of one queue."""
    args: list[str] = []
    for p in placements:
        args += [p.id, str(p.ready_score), "" if p.run_at_ms is None else str(p.run_at_ms)]
    return args


def dequeue_keys(prefix: str, queues: Sequence[str]) -> list[str]:
    keys = [*_lease_keys(prefix), make_key(prefix, "ready_scores")]
    for queue in queues:
        keys += [
            make_key(prefix, "ready", queue),
            make_key(prefix, "delayed", queue),
            make_key(prefix, "marker", queue),
        ]
    return keys


def dequeue_args(
    queues: Sequence[str], count: int, lease_ms: int, token_prefix: str, worker: str
) -> list[str]:
    return [str(count), str(lease_ms), token_prefix, worker, *queues]


def ack_keys(prefix: str) -> list[str]:
    return [*_lease_keys(prefix), make_key(prefix, "cancel")]


def ack_args(leases: Sequence[tuple[str, str]]) -> list[str]:
    """Pairs (id, token)."""
    return [part for lease in leases for part in lease]


def retry_keys(prefix: str) -> list[str]:
    return [*ack_keys(prefix), make_key(prefix, "ready_scores")]


def retry_args(prefix: str, items: Sequence[tuple[str, str, int, int]]) -> list[str]:
    """Key base, then quads (id, token, run_at_ms, ready_score); the queue comes from the lease in Redis."""
    args = [key_base(prefix)]
    for job_id, token, run_at_ms, score in items:
        args += [job_id, token, str(run_at_ms), str(score)]
    return args


def give_back_keys(prefix: str) -> list[str]:
    return retry_keys(prefix)


def give_back_args(prefix: str, items: Sequence[tuple[str, str, int]]) -> list[str]:
    """Key base, then triples (id, token, ready_score); the queue comes from the lease in Redis."""
    args = [key_base(prefix)]
    for job_id, token, score in items:
        args += [job_id, token, str(score)]
    return args


def extend_keys(prefix: str, leases: Sequence[tuple[str, str, str]]) -> list[str]:
    keys = ack_keys(prefix)
    for queue in _queue_index(q for _, _, q in leases if q):
        keys += [make_key(prefix, "ready", queue), make_key(prefix, "delayed", queue)]
    return keys


def extend_args(
    leases: Sequence[tuple[str, str, str]], lease_ms: int, worker: str | None = None
) -> list[str]:
    """Lease ms, worker, distinct queues, then triples (id, token, queue index or 0 when unknown)."""
    index = _queue_index(q for _, _, q in leases if q)
    args = [str(lease_ms), worker or "", str(len(index)), *index]
    for job_id, token, queue in leases:
        args += [job_id, token, str(index.get(queue, 0))]
    return args


def reap_expired_keys(prefix: str) -> list[str]:
    return [make_key(prefix, name) for name in ("leases", "lease_tokens", "lease_queues")]


def reap_expired_args(limit: int) -> list[str]:
    return [str(limit)]


def cancel_keys(prefix: str, items: Sequence[tuple[str, str]]) -> list[str]:
    keys = [
        make_key(prefix, "leases"),
        make_key(prefix, "cancel"),
        make_key(prefix, "ready_scores"),
        make_key(prefix, "lease_workers"),
    ]
    for queue in _queue_index(q for _, q in items):
        keys += [make_key(prefix, "ready", queue), make_key(prefix, "delayed", queue)]
    return keys


def cancel_args(
    prefix: str, items: Sequence[tuple[str, str]], control_ttl_ms: int = CONTROL_TTL_MS
) -> list[str]:
    """Key base, control list TTL, then pairs (id, queue index)."""
    index = _queue_index(q for _, q in items)
    args: list[str] = [key_base(prefix), str(control_ttl_ms)]
    for job_id, queue in items:
        args += [job_id, str(index[queue])]
    return args


def control_key(prefix: str, worker: str) -> str:
    """``P:{jq}:control:<worker>``: LIST of job ids whose cancel the worker must pass on (``cancel.lua``)."""
    return make_key(prefix, "control", worker)


def _reconcile_queues(
    placements: Sequence[Placement], running: Sequence[tuple[str, str, str]]
) -> dict[str, int]:
    return _queue_index([*(p.queue for p in placements), *(q for _, _, q in running)])


def reconcile_keys(
    prefix: str, placements: Sequence[Placement], running: Sequence[tuple[str, str, str]]
) -> list[str]:
    keys = [make_key(prefix, n) for n in ("leases", "lease_tokens", "lease_queues", "ready_scores")]
    for queue in _reconcile_queues(placements, running):
        keys += [
            make_key(prefix, "ready", queue),
            make_key(prefix, "delayed", queue),
            make_key(prefix, "marker", queue),
        ]
    return keys


def reconcile_args(
    placements: Sequence[Placement], running: Sequence[tuple[str, str, str]], lease_ms: int | None
) -> list[str]:
    """Lease ms (None: "check", write nothing), distinct queues, placement count, placement quads, then
    running (id, token, queue index)."""
    index = _reconcile_queues(placements, running)
    mode = "check" if lease_ms is None else str(lease_ms)
    args = [mode, str(len(index)), *index, str(len(placements))]
    for p in placements:
        args += [
            p.id,
            str(index[p.queue]),
            str(p.ready_score),
            "" if p.run_at_ms is None else str(p.run_at_ms),
        ]
    for job_id, token, queue in running:
        args += [job_id, token, str(index[queue])]
    return args


def epoch_keys(prefix: str) -> list[str]:
    return [make_key(prefix, "epoch")]


def epoch_args(candidate: str) -> list[str]:
    return [candidate]


def heartbeat_keys(prefix: str, worker: str) -> list[str]:
    return [make_key(prefix, "workers"), make_key(prefix, "worker", worker)]


def heartbeat_args(
    worker: str, info: dict[str, object], ttl_ms: int, prune_ms: int = WORKER_PRUNE_MS
) -> list[str]:
    """Worker id, TTL, prune age, then (field, JSON value) pairs: values keep their type through Redis."""
    args = [worker, str(ttl_ms), str(prune_ms)]
    for field, value in info.items():
        args += [field, json.dumps(value, separators=(",", ":"), default=str)]
    return args


def lock_keys(prefix: str, name: str) -> list[str]:
    return [make_key(prefix, "lock", name)]


def throttle_keys(prefix: str, scope: str, subject: str) -> list[str]:
    return [make_key(prefix, "throttle", scope, subject)]


def throttle_args(window_ms: int, limit: int, member: str) -> list[str]:
    return [str(window_ms), str(limit), member]


def metrics_key(prefix: str, name: str) -> str:
    """``P:{jq}:metrics:<name>``: one HASH per metric (field = label tuple, value = count or sum)."""
    return make_key(prefix, "metrics", name)


def metrics_minute_key(prefix: str, minute: int) -> str:
    """``P:{jq}:metrics:minute:<unix minute>``: one HASH of per-status counts per minute."""
    return make_key(prefix, "metrics", "minute", str(minute))


def unlock_args(token: str) -> list[str]:
    return [token]


def renew_lock_args(token: str, ttl_ms: int) -> list[str]:
    return [token, str(ttl_ms)]


# --- helpers ------------------------------------------------------------------------------------------------


def chunked[T](items: Sequence[T], size: int = MAX_BATCH) -> Iterator[Sequence[T]]:
    """Slices of at most ``size`` items: how every batch method keeps each script call O(1,000)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _unique_last(placements: Sequence[Placement]) -> list[Placement]:
    """One placement per id (the last wins): a script must never add one id to two sets."""
    return list({p.id: p for p in placements}.values())


def _unique_first[T: tuple[str, ...]](items: Sequence[T]) -> list[T]:
    """One entry per id (the first wins), so a script never sees an id twice in one call."""
    seen: set[str] = set()
    out: list[T] = []
    for item in items:
        job_id = item[0]
        if job_id not in seen:
            seen.add(job_id)
            out.append(item)
    return out


def _to_int(value: str | bytes | float) -> int:
    """Redis replies scores as strings; integer scores are exact below 2**53 (ours stay below 2.1e15)."""
    if isinstance(value, (bytes, str)):
        text = value.decode() if isinstance(value, bytes) else value
        try:
            return int(text)
        except ValueError:
            return int(float(text))
    return int(value)


@dataclass(frozen=True, slots=True)
class _Script:
    name: str
    source: str
    sha: str


def _include(match: re.Match[str]) -> str:
    """The code of an included file (its ``--[[ ]]`` header dropped) on one line, for ``INCLUDE_RE``."""
    text = (LUA_DIR / match["file"]).read_text(encoding="utf-8")
    if text.startswith("--[["):
        text = text.split("]]", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if any("--" in line for line in lines):
        # Joined onto one line, a comment would swallow the code after it (and nested includes).
        raise ValueError(f"{match['file']}: an included file may hold no comment below its header")
    return " ".join(lines)


def script_source(name: str) -> str:
    """The text Redis runs for script ``name``: its file with every include marker expanded."""
    return INCLUDE_RE.sub(_include, (LUA_DIR / SCRIPTS[name]).read_text(encoding="utf-8"))


def _load_scripts() -> dict[str, _Script]:
    scripts = {}
    for name in SCRIPTS:
        source = script_source(name)
        scripts[name] = _Script(
            name, source, hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        )
    return scripts


_SCRIPT_CACHE: dict[str, _Script] = {}


def _scripts() -> dict[str, _Script]:
    """Lua sources read once per process, on first use (not at import)."""
    if not _SCRIPT_CACHE:
        _SCRIPT_CACHE.update(_load_scripts())
    return _SCRIPT_CACHE


# --- the broker ---------------------------------------------------------------------------------------------


class Broker:
    """Redis dispatch index for one key prefix; thread-safe as far as the given client is."""

    def __init__(self, client: redis.Redis, prefix: str = "jq") -> None:
        if not client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("Broker needs a redis.Redis client created with decode_responses=True")
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError(f"invalid key prefix {prefix!r}: must be non-empty and carry no hash tag")
        # redis-py types replies as bytes | str, not knowing decode_responses; it is required above, so
        # the few direct client replies below are cast to str (script replies from _run are Any).
        self.client = client
        self.prefix = prefix

    # -- plumbing

    def key(self, *parts: str) -> str:
        """``key("ready", "default")`` -> ``"jq:{jq}:ready:default"``."""
        return make_key(self.prefix, *parts)

    def _run(self, name: str, keys: Sequence[str], args: Sequence[str]) -> Any:
        """EVALSHA; after a SCRIPT FLUSH or a Redis restart (NoScriptError) load the script and retry once."""
        script = _scripts()[name]
        try:
            return self.client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.client.script_load(script.source)
            return self.client.evalsha(script.sha, len(keys), *keys, *args)

    def load_scripts(self) -> None:
        """SCRIPT LOAD every script up front (optional: ``_run`` loads on demand)."""
        for script in _scripts().values():
            self.client.script_load(script.source)

    def now_ms(self) -> int:
        """Redis TIME in ms: the one clock every script uses, so hosts' clocks never matter."""
        seconds, micros = self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    # -- transitions

    def enqueue(self, placements: Sequence[Placement]) -> None:
        """Place jobs PostgreSQL committed as queued/scheduled/retrying; one call per queue and 1,000 ids.

        Does not check leases: PostgreSQL decided the job is not running.
        """
        by_queue: dict[str, list[Placement]] = {}
        for p in _unique_last(placements):
            by_queue.setdefault(p.queue, []).append(p)
        for queue, group in by_queue.items():
            keys = enqueue_keys(self.prefix, queue)
            for chunk in chunked(group):
                self._run("enqueue", keys, enqueue_args(chunk))

    def dequeue(self, queues: Sequence[str], count: int, lease_ms: int, worker: str) -> DequeueResult:
        """Promote due delayed jobs, pop up to ``count`` over ``queues`` (order = precedence) and lease them.

        One script call per 1,000 jobs; the lease is only a hint until the PostgreSQL claim (invariant 1).
        """
        if not queues:
            raise ValueError("dequeue needs at least one queue")
        if len(set(queues)) != len(queues):
            raise ValueError(f"duplicate queue in {list(queues)!r}")
        keys = dequeue_keys(self.prefix, queues)
        jobs: list[Popped] = []
        next_due: int | None = None
        remaining = max(count, 0)
        while True:
            want = min(remaining, MAX_BATCH)
            reply = self._run("dequeue", keys, dequeue_args(queues, want, lease_ms, uuid.uuid4().hex, worker))
            next_due = _to_int(reply[0]) if reply[0] else None
            got = [
                Popped(id=reply[i + 1], queue=reply[i], token=reply[i + 2]) for i in range(1, len(reply), 3)
            ]
            jobs += got
            remaining -= len(got)
            if remaining <= 0 or len(got) < want:
                return DequeueResult(jobs=jobs, next_due_ms=next_due)

    def ack(self, leases: Sequence[tuple[str, str]]) -> int:
        """Release (id, token) leases after the outcome is committed (invariant 2); returns how many."""
        keys = ack_keys(self.prefix)
        return sum(int(self._run("ack", keys, ack_args(chunk))) for chunk in chunked(leases))

    def retry(self, items: Sequence[tuple[str, str, int, int]]) -> int:
        """(id, token, run_at_ms, ready_score): release the lease and delay the job in its lease's queue."""
        keys = retry_keys(self.prefix)
        return sum(int(self._run("retry", keys, retry_args(self.prefix, chunk))) for chunk in chunked(items))

    def give_back(self, items: Sequence[tuple[str, str, int]]) -> int:
        """(id, token, ready_score): release the lease, make the job ready at once (no attempt charged)."""
        keys = give_back_keys(self.prefix)
        return sum(
            int(self._run("give_back", keys, give_back_args(self.prefix, chunk))) for chunk in chunked(items)
        )

    def extend(
        self, leases: Sequence[tuple[str, str, str]], lease_ms: int, worker: str | None = None
    ) -> ExtendResult:
        """(id, token, queue): extend owned leases, re-assert lost ones, report ``lost`` and ``cancel`` ids.

        Re-assertion covers a Redis that lost its data; an id found queued again in its queue is reported
        lost instead (the reaper or a give-back moved it, so another worker may run it).
        """
        lost: list[str] = []
        cancel: list[str] = []
        for chunk in chunked(_unique_first(leases)):
            reply = self._run(
                "extend_lease", extend_keys(self.prefix, chunk), extend_args(chunk, lease_ms, worker)
            )
            lost += reply[0]
            cancel += reply[1]
        return ExtendResult(lost=lost, cancel=cancel)

    def expired(self, limit: int = MAX_BATCH) -> list[tuple[str, str, str]]:
        """Up to ``limit`` (id, token, queue) with lease expiry < now, earliest first; changes nothing.

        The caller writes PostgreSQL first, then calls ``retry()`` / ``ack()`` for the rows it changed.
        """
        limit = max(0, min(limit, MAX_BATCH))
        if limit == 0:
            return []
        reply = self._run("reap_expired", reap_expired_keys(self.prefix), reap_expired_args(limit))
        return [(reply[i], reply[i + 1], reply[i + 2]) for i in range(0, len(reply), 3)]

    def cancel(self, items: Sequence[tuple[str, str]]) -> list[str]:
        """(id, queue): drop queued/delayed ids; flag and return leased ones.

        A leased id is pushed onto its lease worker's control list (``next_cancels()`` delivers it at once)
        and stays flagged in the cancel SET, which ``extend()`` reports: the fallback if the push is lost.
        """
        flagged: list[str] = []
        for chunk in chunked(items):
            reply = self._run("cancel", cancel_keys(self.prefix, chunk), cancel_args(self.prefix, chunk))
            flagged += reply
        return flagged

    def next_cancels(self, worker: str, timeout: float) -> list[str]:
        """Block up to ``timeout`` s on ``worker``'s control list; the job ids pushed onto it ([] if none).

        BLPOP holds its connection: callers use a dedicated client whose socket timeout exceeds ``timeout``.
        """
        key = control_key(self.prefix, worker)
        # Redis reads a timeout that rounds to 0 ms as "block forever": never send one below 10 ms.
        reply = cast("tuple[str, str] | None", self.client.blpop([key], timeout=max(timeout, 0.01)))
        if reply is None:
            return []
        rest = cast("list[str] | None", self.client.lpop(key, MAX_BATCH))
        return [reply[1], *(rest or [])]

    def drop_cancels(self, worker: str) -> None:
        """Delete ``worker``'s control list (it is leaving; its leases are released or expire)."""
        self.client.delete(control_key(self.prefix, worker))

    def reconcile(
        self, placements: Sequence[Placement], running: Sequence[tuple[str, str, str]], lease_ms: int
    ) -> int:
        """Re-add what PostgreSQL has and Redis lacks, never duplicating; returns how many entries were added.

        ``running`` holds (id, token, queue) of jobs PostgreSQL says are running: a missing lease is created
        with expiry now + ``lease_ms`` so a live worker re-extends it and the reaper handles a dead one.
        """
        return len(self._reconcile(placements, running, lease_ms))

    def reconcile_missing(
        self, placements: Sequence[Placement], running: Sequence[tuple[str, str, str]]
    ) -> list[str]:
        """The ids ``reconcile`` would add now (each checked atomically, nothing written)."""
        return self._reconcile(placements, running, None)

    def _reconcile(
        self, placements: Sequence[Placement], running: Sequence[tuple[str, str, str]], lease_ms: int | None
    ) -> list[str]:
        ids: list[str] = []
        batches: list[tuple[Sequence[Placement], Sequence[tuple[str, str, str]]]] = [
            *((chunk, ()) for chunk in chunked(placements)),
            *(((), chunk) for chunk in chunked(running)),
        ]
        for chunk_placements, chunk_running in batches:
            keys = reconcile_keys(self.prefix, chunk_placements, chunk_running)
            reply = self._run("reconcile", keys, reconcile_args(chunk_placements, chunk_running, lease_ms))
            ids += [str(item) for item in reply]  # str: decode_responses (see __init__)
        return ids

    def epoch(self) -> tuple[str, bool]:
        """(epoch, created_now): a changed epoch reveals a Redis that lost its data (invariant 6); a created
        one, a Redis without an epoch (first start, or data lost before this process saw an epoch)."""
        value, created = self._run("epoch", epoch_keys(self.prefix), epoch_args(uuid.uuid4().hex))
        return value, bool(created)

    # -- workers

    def heartbeat(self, worker: str, info: dict[str, object], ttl_ms: int) -> None:
        """Mark ``worker`` alive now (Redis TIME) and merge its info (JSON values) with a TTL."""
        self._run("heartbeat", heartbeat_keys(self.prefix, worker), heartbeat_args(worker, info, ttl_ms))

    def remove_worker(self, worker: str) -> None:
        """Forget a worker that shut down cleanly (its leases are released by the worker itself)."""
        self._run("forget_worker", heartbeat_keys(self.prefix, worker), [worker])

    def workers(self, stale_after_ms: int) -> list[dict[str, object]]:
        """Known workers with their info, ``last_heartbeat_ms`` and ``alive`` (recent heartbeat)."""
        now = self.now_ms()
        members = cast(  # str members: decode_responses (see __init__)
            "list[tuple[str, float]]", self.client.zrange(self.key("workers"), 0, -1, withscores=True)
        )
        pipe = self.client.pipeline(transaction=False)
        for worker, _ in members:
            pipe.hgetall(self.key("worker", worker))
        infos = pipe.execute() if members else []
        out: list[dict[str, object]] = []
        for (worker, score), info in zip(members, infos, strict=True):
            entry: dict[str, object] = {}
            for field, raw in info.items():
                try:
                    entry[field] = json.loads(raw)
                except ValueError:
                    entry[field] = raw
            last = int(score)
            entry.update(id=worker, last_heartbeat_ms=last, alive=now - last <= stale_after_ms)
            out.append(entry)
        return out

    def wait_for_work(self, queues: Sequence[str], timeout: float) -> tuple[str, int] | None:
        """Block on the queues' wake markers (BZPOPMIN): (queue, score) or None after ``timeout`` seconds.

        Score 0: work is ready now; otherwise the due time (ms) of the earliest delayed job. Blocks a
        connection: callers use a dedicated client whose socket timeout exceeds ``timeout``. 0 blocks forever.
        """
        by_key = {self.key("marker", q): q for q in queues}
        # Redis reads a timeout that rounds to 0 ms as "block forever": never send one below 10 ms.
        # (key, member, score), str: decode_responses (see __init__)
        reply = cast(
            "tuple[str, str, float] | None", self.client.bzpopmin(list(by_key), timeout=max(timeout, 0.01))
        )
        if reply is None:
            return None
        marker, _member, score = reply
        return by_key[marker], int(score)

    # -- locks (optimisations only, invariant 4)

    def acquire_lock(self, name: str, ttl_ms: int) -> str | None:
        """SET NX PX with a random token; returns the token, or None if someone else holds the lock."""
        token = uuid.uuid4().hex
        return token if self.client.set(self.key("lock", name), token, nx=True, px=ttl_ms) else None

    def release_lock(self, name: str, token: str) -> bool:
        """Delete the lock only if ``token`` still holds it (an expired lock may be someone else's now)."""
        return bool(self._run("unlock", lock_keys(self.prefix, name), unlock_args(token)))

    def renew_lock(self, name: str, token: str, ttl_ms: int) -> bool:
        """Extend the lock's TTL only if ``token`` still holds it (e.g. the scheduler leader)."""
        return bool(self._run("renew_lock", lock_keys(self.prefix, name), renew_lock_args(token, ttl_ms)))

    def lock_ttl_ms(self, name: str) -> int:
        """PTTL of the lock: ms left, -2 when nobody holds it, -1 when it has no TTL (a follower's wait)."""
        return int(self.client.pttl(lock_keys(self.prefix, name)[0]))

    # -- pub/sub (wake-ups only: a lost message just delays a reader until its bounded wait ends)

    def announce_schedule_change(self) -> int:
        """Publish on the schedules channel; returns how many subscribers (schedulers) received it."""
        return int(self.client.publish(self.key(SCHEDULES_CHANNEL), "changed"))

    def subscribe_schedule_changes(self) -> PubSub:
        """A PubSub subscribed to the schedules channel (subscribe replies skipped); the caller closes it.

        It holds a connection of this broker's client while it listens: give it a broker of its own whose
        socket timeout exceeds the listener's block.
        """
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self.key(SCHEDULES_CHANNEL))
        except BaseException:
            pubsub.close()
            raise
        return pubsub

    # -- metrics (counters every process adds to; written about once a second, never on the job path)

    def add_metrics(
        self,
        counters: Mapping[str, Mapping[str, float]],
        minutes: Mapping[int, Mapping[str, int]],
        minute_ttl_s: int,
    ) -> None:
        """Add to metric hashes and per-minute buckets in one pipelined round trip (no script).

        ``counters``: metric name -> field -> increment (HINCRBYFLOAT for floats, else HINCRBY);
        ``minutes``: unix minute -> field -> increment, each bucket expiring ``minute_ttl_s`` after its
        last write.
        """
        pipe = self.client.pipeline(transaction=False)
        for name, counter in counters.items():
            key = metrics_key(self.prefix, name)
            for field, value in counter.items():
                if isinstance(value, float):
                    pipe.hincrbyfloat(key, field, value)
                else:
                    pipe.hincrby(key, field, value)
        for minute, counter in minutes.items():
            minute_key = metrics_minute_key(self.prefix, minute)
            for field, value in counter.items():
                pipe.hincrby(minute_key, field, value)
            pipe.expire(minute_key, minute_ttl_s)
        pipe.execute()

    def read_metrics(
        self, names: Sequence[str], minutes: Sequence[int]
    ) -> tuple[dict[str, dict[str, str]], list[dict[str, str]]]:
        """({name: hash}, [minute bucket in the order given]) in one round trip; labels are bounded."""
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(metrics_key(self.prefix, name))
        for minute in minutes:
            pipe.hgetall(metrics_minute_key(self.prefix, minute))
        replies = pipe.execute()
        return dict(zip(names, replies[: len(names)], strict=True)), replies[len(names) :]

    # -- API helpers

    def throttle(self, scope: str, subject: str, window_ms: int, limit: int) -> ThrottleResult:
        """Sliding-window admission for ``subject`` in ``scope``, with what is left of the window.

        One script, so every web process shares one budget even under concurrency.
        """
        keys = throttle_keys(self.prefix, scope, subject)
        wait_ms, remaining, reset_ms = self._run(
            "throttle", keys, throttle_args(window_ms, limit, uuid.uuid4().hex)
        )
        return ThrottleResult(int(wait_ms), int(remaining), int(reset_ms))

    def cached_stats(self) -> str | None:
        """The stats API's cached PostgreSQL view (JSON text), or None once it expired."""
        # str: decode_responses (see __init__)
        return cast("str | None", self.client.get(self.key("api", "stats", "postgres")))

    def cache_stats(self, text: str, ttl_ms: int) -> None:
        """Share the PostgreSQL view with every web process for ``ttl_ms``."""
        self.client.set(self.key("api", "stats", "postgres"), text, px=ttl_ms)

    # -- reads (diagnostics, dashboard)

    def depths(self, queues: Sequence[str]) -> dict[str, dict[str, int]]:
        """{queue: {"ready": n, "delayed": n}} in one round trip (running counts come from PostgreSQL)."""
        pipe = self.client.pipeline(transaction=False)
        for queue in queues:
            pipe.zcard(self.key("ready", queue))
            pipe.zcard(self.key("delayed", queue))
        counts = pipe.execute()
        return {
            queue: {"ready": int(counts[2 * i]), "delayed": int(counts[2 * i + 1])}
            for i, queue in enumerate(queues)
        }

    def running(self) -> tuple[int, Counter[str]]:
        """(leases held, leases per queue) in one round trip.

        O(running jobs): HVALS of the lease queues, bounded by workers x threads, not by the backlog.
        """
        pipe = self.client.pipeline(transaction=False)
        pipe.zcard(self.key("leases"))
        pipe.hvals(self.key("lease_queues"))
        count, lease_queues = pipe.execute()
        return int(count), Counter(lease_queues)

    def location(self, job_id: str, queue: str) -> str | None:
        """ "leased" | "ready" | "delayed" | None: where Redis holds the id (tests and diagnostics)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.zscore(self.key("leases"), job_id)
        pipe.zscore(self.key("ready", queue), job_id)
        pipe.zscore(self.key("delayed", queue), job_id)
        leased, ready, delayed = pipe.execute()
        if leased is not None:
            return "leased"
        if ready is not None:
            return "ready"
        if delayed is not None:
            return "delayed"
        return None
