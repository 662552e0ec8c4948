/*
 * The overview's queues panel (#queue-rows): ready / delayed / running and the oldest waiting job's
 * age per queue. Depths are not in the events, so they come only from /api/stats/ snapshots; the age
 * keeps counting between snapshots.
 */
import { h, setText } from "./dom.js";
import { fmtAge, fmtCount } from "./format.js";

/** The oldest waiting job's age in seconds, from whichever field the stats API provides. */
function oldestAge(depth, generatedAt) {
  if (typeof depth.oldest_age_seconds === "number") return depth.oldest_age_seconds;
  if (typeof depth.oldest_age === "number") return depth.oldest_age;
  const since = depth.oldest_ready_at || depth.oldest_queued_at || depth.oldest_at;
  if (since) return (Date.parse(generatedAt || Date()) - Date.parse(since)) / 1000;
  return null;
}

export function queueDepths() {
  const queueInfo = new Map(); // queue -> {ready, delayed, running, oldest, fetchedAt}

  /** The queue's row; a queue the page was not rendered with gets one. */
  function row(name) {
    const body = document.getElementById("queue-rows");
    for (const existing of body.rows) if (existing.dataset.queue === name) return existing;
    const created = h("tr", { dataset: { queue: name } }, h("th", { scope: "row" }, name));
    for (let i = 0; i < 4; i += 1) created.append(h("td", null, "–"));
    body.append(created);
    return created;
  }

  function render() {
    const now = Date.now();
    for (const [name, info] of queueInfo) {
      const cells = row(name).cells;
      setText(cells[1], fmtCount(info.ready));
      setText(cells[2], fmtCount(info.delayed));
      setText(cells[3], fmtCount(info.running));
      const age = info.oldest === null ? null : info.oldest + (now - info.fetchedAt) / 1000;
      setText(cells[4], info.ready ? fmtAge(age) : "–");
    }
  }

  function applySnapshot(stats) {
    const fetchedAt = Date.now();
    for (const [name, depth] of Object.entries(stats.queues || {})) {
      queueInfo.set(name, {
        ready: depth.ready ?? null,
        delayed: depth.delayed ?? null,
        running: depth.running ?? null,
        oldest: oldestAge(depth, stats.generated_at),
        fetchedAt,
      });
    }
    render();
  }

  return { applySnapshot, render };
}
