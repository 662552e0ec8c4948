/*
 * The overview's Dead letters tab (#dead-rows, #dead-count): read from /api/dead-letters/, then kept
 * current by the events (a job that fails opens one; a failed job that runs again is "retried").
 */
import { api, results } from "./api.js";
import { h, setBadge } from "./dom.js";
import { fmtDateTime, jobUrl, seconds } from "./format.js";

const DEAD_ROWS = 100;

export function deadLetters() {
  const deadBody = document.getElementById("dead-rows");
  const deadRows = new Map(); // job id -> {tr, state}
  let openDead = null; // unknown until the first stats snapshot

  function setOpen(n) {
    openDead = Math.max(0, n);
    document.getElementById("dead-count").textContent = openDead ? String(openDead) : "";
  }

  function upsert(item) {
    let entry = deadRows.get(item.job_id);
    if (!entry) {
      const state = h("span");
      const tr = h(
        "tr",
        { dataset: { jobId: item.job_id } },
        h("td", null, h("a", { href: jobUrl(item.job_id) }, item.job_id.slice(0, 8))),
        h("td", null, item.job_type || ""),
        h("td", null, item.queue || ""),
        h("td", { class: "mono" }, (item.reason || "").split("\n")[0].slice(0, 300)),
        h("td", null, item.attempts ?? ""),
        h("td", null, fmtDateTime(item.dead_at)),
        h("td", null, state),
      );
      entry = { tr, state, at: seconds(item.dead_at) };
      deadRows.set(item.job_id, entry);
      let before = deadBody.firstElementChild;
      while (before && deadRows.get(before.dataset.jobId).at >= entry.at) before = before.nextElementSibling;
      deadBody.insertBefore(tr, before);
      while (deadBody.rows.length > DEAD_ROWS) {
        const last = deadBody.lastElementChild;
        deadRows.delete(last.dataset.jobId);
        last.remove();
      }
    }
    setBadge(entry.state, item.resolution || "open");
    entry.tr.dataset.state = item.resolution || "open";
    document.getElementById("dead-empty").hidden = deadRows.size > 0;
  }

  /** Follow one job's event: a failure opens a dead letter, leaving "failed" marks it retried. */
  function track(job) {
    const entry = deadRows.get(job.id);
    const open = entry && entry.tr.dataset.state === "open";
    if (job.status === "failed" && !open) {
      upsert({
        job_id: job.id,
        job_type: job.type,
        queue: job.queue,
        reason: job.error,
        attempts: job.attempts,
        dead_at: job.finished_at || new Date(job.at * 1000).toISOString(),
        resolution: "open",
      });
      if (openDead !== null) setOpen(openDead + 1);
    } else if (job.status !== "failed" && open) {
      setBadge(entry.state, "retried");
      entry.tr.dataset.state = "retried";
      if (openDead !== null) setOpen(openDead - 1);
    }
  }

  async function refresh() {
    const response = await api("dead-letters/?page_size=50");
    if (!response.ok) return;
    deadRows.clear();
    deadBody.replaceChildren();
    for (const item of results(response.data)) upsert(item);
    document.getElementById("dead-empty").hidden = deadRows.size > 0;
  }

  return { setOpen, track, refresh };
}
