/*
 * The overview's workers panel (#workers): each worker and the jobs it runs. The list comes from
 * /api/workers/ (heartbeats are not events); which job a worker runs follows the "running" events.
 */
import { api, results } from "./api.js";
import { h, setText } from "./dom.js";
import { jobUrl } from "./format.js";

export function workersPanel() {
  const workers = new Map(); // worker id -> {info, jobs:Set}

  function apply(list) {
    const seen = new Set();
    for (const info of list) {
      seen.add(info.id);
      workers.set(info.id, { info, jobs: new Set(info.current_jobs || []) });
    }
    for (const id of [...workers.keys()]) if (!seen.has(id)) workers.delete(id);
    render();
  }

  async function refresh() {
    const response = await api("workers/");
    if (response.ok) apply(results(response.data));
  }

  function render() {
    const list = document.getElementById("workers");
    const items = [];
    let alive = 0;
    for (const [id, { info, jobs }] of [...workers].sort((a, b) => a[0].localeCompare(b[0]))) {
      if (info.alive !== false) alive += 1;
      const ids = [...jobs];
      const links = ids.slice(0, 6).map((job) => h("a", { href: jobUrl(job), class: "mono" }, job.slice(0, 8)));
      items.push(
        h(
          "li",
          { dataset: { worker: id }, class: info.alive === false ? "stale" : null },
          h("strong", { class: "mono" }, id),
          " ",
          h("span", { class: "muted" }, `${(info.queues || []).join(", ")} · ${info.concurrency ?? "?"} threads`),
          info.alive === false ? " · stale" : "",
          h(
            "div",
            { class: "jobs-list" },
            ids.length ? `running ${ids.length}: ` : h("span", { class: "muted" }, "idle"),
            ...links,
            ids.length > 6 ? `+${ids.length - 6}` : null,
          ),
        ),
      );
    }
    list.replaceChildren(...(items.length ? items : [h("li", { class: "muted" }, "No workers.")]));
    setText(document.getElementById("worker-count"), `${alive} alive`);
  }

  /** Move a job to the worker its event names; true when the panel needs a render. */
  function track(job) {
    let changed = false;
    for (const entry of workers.values()) {
      if (entry.jobs.delete(job.id)) changed = true;
    }
    if (job.status === "running" && job.worker) {
      const entry = workers.get(job.worker);
      if (entry) {
        entry.jobs.add(job.id);
        // A dropped "finished" event would leave a job listed forever: a worker runs at most one
        // job per thread, so the oldest entries beyond that go (the next refresh is exact again).
        const limit = entry.info.concurrency || Infinity;
        for (const stale of entry.jobs) {
          if (entry.jobs.size <= limit) break;
          entry.jobs.delete(stale);
        }
        changed = true;
      }
    }
    return changed;
  }

  return { refresh, render, track };
}
