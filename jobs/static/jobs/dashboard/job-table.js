/*
 * The overview's live job table (#job-rows): the most recently changed jobs that match the filters,
 * latest first. Rows are updated in place and reordered by moving only misplaced ones, so a busy
 * system costs a bounded amount of DOM work per animation frame.
 */
import { h, setBadge, setText } from "./dom.js";
import { fmtTime, jobUrl } from "./format.js";

export const TABLE_ROWS = 100;

/** ``filters`` is the page's live {status, queue, type} object (changed in place by the form). */
export function jobTable(filters) {
  const jobRows = new Map(); // id -> {job, at, tr, cells}
  const tbody = document.getElementById("job-rows");

  function matches(job) {
    return (
      (!filters.status || job.status === filters.status) &&
      (!filters.queue || job.queue === filters.queue) &&
      (!filters.type || job.type === filters.type)
    );
  }

  function buildRow(job) {
    const cells = {
      link: h("a", { href: jobUrl(job.id) }, job.id.slice(0, 8)),
      type: h("td"),
      queue: h("td"),
      badge: h("span"),
      attempts: h("td"),
      worker: h("td", { class: "mono" }),
      updated: h("td"),
    };
    const tr = h(
      "tr",
      { dataset: { jobId: job.id } },
      h("td", null, cells.link),
      cells.type,
      cells.queue,
      h("td", null, cells.badge),
      cells.attempts,
      cells.worker,
      cells.updated,
    );
    return { tr, cells };
  }

  function fillRow(entry, job, at) {
    const { cells, tr } = entry;
    const statusChanged = tr.dataset.status !== job.status;
    tr.dataset.status = job.status;
    setText(cells.type, job.type);
    setText(cells.queue, job.queue);
    if (statusChanged) setBadge(cells.badge, job.status);
    setText(cells.attempts, job.max_attempts ? `${job.attempts}/${job.max_attempts}` : job.attempts);
    setText(cells.worker, job.worker);
    setText(cells.updated, fmtTime(at));
    cells.updated.title = job.error || "";
    if (statusChanged && entry.job) flash(tr);
  }

  // A changed row is highlighted briefly; one timer clears every highlight (no per-row timers).
  let flashing = [];
  let flashTimer = null;
  function flash(tr) {
    tr.classList.add("flash");
    flashing.push(tr);
    if (!flashTimer) {
      flashTimer = setTimeout(() => {
        for (const row of flashing) row.classList.remove("flash");
        flashing = [];
        flashTimer = null;
      }, 400);
    }
  }

  /** Insert or update one job's row (a stale update, older than the row, is ignored); true if it changed. */
  function upsert(job, at) {
    const entry = jobRows.get(job.id);
    if (!matches(job)) {
      if (entry && at >= entry.at) {
        entry.tr.remove();
        jobRows.delete(job.id);
        return true;
      }
      return false;
    }
    if (entry && at < entry.at) return false;
    const row = entry || buildRow(job);
    fillRow(row, job, at);
    row.job = job;
    row.at = at;
    jobRows.set(job.id, row);
    return true;
  }

  /** Put rows in order (latest change first) moving only misplaced ones, and keep at most 100. */
  function order() {
    const ordered = [...jobRows.values()].sort((a, b) => b.at - a.at || (b.job.seq || 0) - (a.job.seq || 0));
    for (const entry of ordered.slice(TABLE_ROWS)) {
      entry.tr.remove();
      jobRows.delete(entry.job.id);
    }
    let cursor = tbody.firstElementChild;
    for (const entry of ordered.slice(0, TABLE_ROWS)) {
      if (entry.tr === cursor) cursor = cursor.nextElementSibling;
      else tbody.insertBefore(entry.tr, cursor);
    }
    document.getElementById("jobs-empty").hidden = jobRows.size > 0;
  }

  /** Drop every row (before a resync refills the table from the API). */
  function clear() {
    for (const entry of jobRows.values()) entry.tr.remove();
    jobRows.clear();
  }

  return { upsert, order, clear };
}
