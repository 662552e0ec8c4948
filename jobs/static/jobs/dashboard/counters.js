/*
 * The overview's status counters ([data-counter]): the API snapshot plus the deltas that arrived
 * after it. A minute of deltas is kept so that each /api/stats/ answer can be corrected by replaying
 * the ones newer than it: a snapshot then never sets the counters back in time.
 */
import { STATUSES, TERMINAL } from "./config.js";
import { setText } from "./dom.js";
import { fmtCount, seconds } from "./format.js";

export function statusCounters() {
  const counts = {};
  const nodes = {};
  for (const node of document.querySelectorAll("[data-counter]")) nodes[node.dataset.counter] = node;
  let deltaLog = []; // [{t: server time of the frame, deltas}] for the last minute

  function render() {
    for (const status of STATUSES) setText(nodes[status], fmtCount(counts[status]));
  }

  /** Remember one frame's deltas (sent at server time ``t``) for replaying over later snapshots. */
  function log(t, deltas) {
    deltaLog.push({ t, deltas });
    if (deltaLog.length > 600 || deltaLog[0].t < t - 60) deltaLog = deltaLog.filter((e) => e.t >= t - 60);
  }

  /**
   * Active counts come from PostgreSQL (``postgres.as_of``, cached a few seconds server-side),
   * finished ones from the live Redis counters (``generated_at``): each is replayed from its own time.
   */
  function applySnapshot(stats) {
    const generated = seconds(stats.generated_at) || Date.now() / 1000;
    const asOf = seconds(stats.postgres && stats.postgres.as_of) || generated;
    for (const status of STATUSES) {
      const value = stats.counts && stats.counts[status];
      if (typeof value !== "number") continue;
      const since = TERMINAL.has(status) ? generated : asOf;
      let later = 0;
      for (const entry of deltaLog) if (entry.t > since) later += entry.deltas[status] || 0;
      counts[status] = Math.max(0, value + later);
    }
    render();
  }

  /** Apply merged deltas; a counter stays unknown ("–") until the first snapshot. */
  function add(deltas) {
    let changed = false;
    for (const [status, n] of Object.entries(deltas)) {
      if (counts[status] === undefined) continue;
      counts[status] = Math.max(0, counts[status] + n);
      changed = true;
    }
    if (changed) render();
  }

  return { log, applySnapshot, add };
}
