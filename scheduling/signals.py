"""Wake the scheduler when a schedule changes: a Redis message published after the commit.

The scheduler blocks on this channel (bounded by its next due time), so an edit made in the
admin or the API takes effect at once instead of at the next poll. A lost message only delays
that until the scheduler's bounded wait ends; nothing depends on its delivery.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from django.db import transaction

logger = logging.getLogger("scheduling")


def publish_change() -> None:
    """Tell every running scheduler to re-read its next due time now (the channel is the broker's)."""
    from jobs.dispatch import get_broker

    try:
        get_broker().announce_schedule_change()
    except redis.RedisError as exc:
        logger.warning("could not announce a schedule change (%s); schedulers see it within their wait", exc)


def schedule_changed(sender: Any, **kwargs: Any) -> None:
    """post_save / post_delete receiver: announce after the commit (never a change that rolled back)."""
    transaction.on_commit(publish_change)
