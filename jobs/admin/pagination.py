"""A changelist paginator that never runs ``COUNT(*)`` over the whole table.

Counting a million jobs costs a full scan on every page load. Small results are
counted exactly, but only up to ``exact_up_to`` rows (``COUNT`` over a ``LIMIT``
subquery); beyond that the count is PostgreSQL's own estimate: ``pg_class``
statistics scaled to the table's current size when nothing is filtered (as the
planner does), the planner's row estimate (``EXPLAIN``) otherwise. The page
shows "about N" then, and ``count_is_estimate`` says so.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property

_TABLE_ESTIMATE_SQL = """
SELECT CASE WHEN c.reltuples < 0 THEN NULL
            WHEN c.relpages > 0
            THEN c.reltuples / c.relpages * (pg_relation_size(c.oid) / current_setting('block_size')::int)
            ELSE c.reltuples END::bigint
  FROM pg_class c
 WHERE c.oid = %s::regclass
"""


def table_estimate(queryset: QuerySet) -> int | None:
    """Rows in the queryset's table per the statistics (None if never analysed): one catalog lookup."""
    connection = connections[queryset.db]
    with connection.cursor() as cursor:
        cursor.execute(_TABLE_ESTIMATE_SQL, [connection.ops.quote_name(queryset.model._meta.db_table)])
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None else None


def planner_estimate(queryset: QuerySet) -> int:
    """The planner's row estimate for the queryset (``EXPLAIN``: planned, not executed)."""
    sql, params = queryset.order_by().query.sql_with_params()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan: Any = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


class EstimatedCountPaginator(Paginator):
    """Exact count up to ``exact_up_to`` rows, PostgreSQL's estimate beyond: page loads stay O(page)."""

    exact_up_to = 10_000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.count_is_estimate = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet) or connections[queryset.db].vendor != "postgresql":
            return super().count
        if not queryset.query.where:
            estimate = table_estimate(queryset)
            if estimate is not None and estimate > self.exact_up_to:
                self.count_is_estimate = True
                return estimate
        bounded = queryset.order_by().values("pk")[: self.exact_up_to + 1].count()
        if bounded <= self.exact_up_to:
            return bounded
        self.count_is_estimate = True
        return max(self.exact_up_to + 1, planner_estimate(queryset))

    def get_elided_page_range(self, number: int | str = 1, *, on_each_side: int = 3, on_ends: int = 2) -> Any:
        """With an estimated count, no links to the last pages: their OFFSET would walk the whole index.

        The estimate may also overshoot, so a "last page" link could land past the end.
        """
        if not self.count_is_estimate:
            return super().get_elided_page_range(number, on_each_side=on_each_side, on_ends=on_ends)
        number = self.validate_number(number)
        window = list(range(max(number - on_each_side, 1), min(number + on_each_side, self.num_pages) + 1))
        pages: list[int | str] = [page for page in range(1, on_ends + 1) if page < window[0]]
        if pages and window[0] > pages[-1] + 1:
            pages.append(self.ELLIPSIS)
        pages += window
        if window[-1] < self.num_pages:
            pages.append(self.ELLIPSIS)
        return pages
