"""Every change of a job's state happens here, and nowhere else.

Each transition checks that the job's current status allows it (an illegal one
raises and changes nothing), writes PostgreSQL, and only after the commit
touches Redis (docs/design.md, invariant 2: commit, then release). The worker's
hot path goes through ``settle()``: ONE autocommit statement whose CTEs record a
batch of finished attempts and claim a batch of popped jobs, never one round
trip per job.

A package, one module per kind of caller, all named from here (``services.enqueue``...):

- ``submission``: validate, insert, idempotency, dispatch after commit (enqueue, submit)
- ``rounds``: the worker's round (succeeded, after_failure, settle, give_back)
- ``recovery``: the reaper and the reconciler (expire_leases, reconcile)
- ``actions``: operator actions (cancel, retry, run_now, dead letters)
- ``deletion``: pruning finished jobs (delete_finished, count_finished)
- ``sql`` + ``queries.sql``: every statement the services send, by name
"""

from __future__ import annotations

from jobs.services._common import placement_for
from jobs.services.actions import cancel, discard_dead_letter, retry, retry_dead_letter, run_now
from jobs.services.deletion import TERMINAL, count_finished, delete_finished
from jobs.services.recovery import RECONCILE_SETTLE_SECONDS, expire_leases, reconcile
from jobs.services.rounds import (
    AtomicFinishRefused,
    after_atomic_finish,
    after_failure,
    finish_atomic,
    give_back,
    settle,
    succeeded,
)
from jobs.services.submission import QUEUE_RE, Submitted, enqueue, enqueue_many, fingerprint, submit, validate
from jobs.values import Claimed, JobSpec, Outcome

__all__ = [
    "QUEUE_RE",
    "RECONCILE_SETTLE_SECONDS",
    "TERMINAL",
    "AtomicFinishRefused",
    "Claimed",
    "JobSpec",
    "Outcome",
    "Submitted",
    "after_atomic_finish",
    "after_failure",
    "cancel",
    "count_finished",
    "delete_finished",
    "discard_dead_letter",
    "enqueue",
    "enqueue_many",
    "expire_leases",
    "finish_atomic",
    "fingerprint",
    "give_back",
    "placement_for",
    "reconcile",
    "retry",
    "retry_dead_letter",
    "run_now",
    "settle",
    "submit",
    "succeeded",
    "validate",
]
