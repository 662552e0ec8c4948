/*
 * Entry module of the overview page (/): counters, queues, throughput, workers, the live job table
 * and the dead letters tab.
 *
 * Frames from the websocket are merged as they arrive and applied to the DOM once per animation
 * frame, touching only the rows and counters that changed. After a (re)connect, a filter change, or
 * a frame that says events were dropped (truncated > 0), the page resyncs from the REST API.
 */
import { api, results } from "./api.js";
import { cfg } from "./config.js";
import { statusCounters } from "./counters.js";
import { deadLetters } from "./dead-letters.js";
import { setText } from "./dom.js";
import { fmtCount, seconds } from "./format.js";
import { isSignedOut } from "./indicator.js";
import { TABLE_ROWS, jobTable } from "./job-table.js";
import { connectLive } from "./live.js";
import { queueDepths } from "./queues.js";
import { throughputChart } from "./throughput-chart.js";
import { workersPanel } from "./workers.js";

const RESYNC_MIN_INTERVAL_MS = 3000; // truncated frames under load resync at most this often
const STATS_MIN_INTERVAL_MS = 2000; // queue depths follow events at most this often
const BACKGROUND_REFRESH_MS = 15000; // workers' heartbeats and counter drift: re-read this often

const filters = { status: cfg.filters.status || "", queue: cfg.filters.queue || "", type: cfg.filters.type || "" };
let tab = cfg.tab;
const counters = statusCounters();
const queues = queueDepths();
const chart = throughputChart();
const workers = workersPanel();
const table = jobTable(filters);
const dead = deadLetters();

// Frames are merged here as they arrive and applied once per animation frame.
let pending = { deltas: {}, jobs: new Map() };
let frameRequested = false;
let resyncing = false;
let resyncAgain = false;
let resyncTimer = null;
let lastResync = 0;
let replay = [];
let statsTimer = null;
let lastStats = 0;

// ---- the /api/stats/ snapshot: counters, queue depths, throughput windows, open dead letters

function applyStats(stats) {
  if (!stats) return;
  pending.deltas = {}; // not applied yet, but already in the delta log the counters replay
  counters.applySnapshot(stats);
  queues.applySnapshot(stats);
  const summary = (w) =>
    w ? `${fmtCount(w.finished ?? w.succeeded)} finished, ${fmtCount(w.failures ?? w.failed)} failures` : "–";
  setText(document.getElementById("last-minute"), summary(stats.last_minute));
  setText(document.getElementById("last-hour"), summary(stats.last_hour));
  const open = stats.postgres && stats.postgres.open_dead_letters;
  if (typeof open === "number") dead.setOpen(open);
}

async function refreshStats() {
  clearTimeout(statsTimer);
  statsTimer = null;
  lastStats = Date.now();
  const response = await api("stats/");
  if (response.ok) applyStats(response.data);
}

/** Queue depths are not in the events: re-read them when events arrive, at most every 2 s. */
function statsSoon() {
  if (statsTimer) return;
  // A short delay lets the workers' counters (written right after the events) land first.
  const wait = Math.max(300, lastStats + STATS_MIN_INTERVAL_MS - Date.now());
  statsTimer = setTimeout(refreshStats, wait);
}

// ---- applying frames

function onFrame(message) {
  const deltas = message.deltas || {};
  chart.add(deltas);
  if (Object.keys(deltas).length) counters.log(message.sent_at || Date.now() / 1000, deltas);
  for (const [status, n] of Object.entries(deltas)) pending.deltas[status] = (pending.deltas[status] || 0) + n;
  for (const job of message.jobs || []) {
    const held = pending.jobs.get(job.id);
    if (!held || (job.at || 0) >= (held.at || 0)) {
      pending.jobs.delete(job.id);
      pending.jobs.set(job.id, job);
    }
  }
  // Only the newest rows can ever be shown: keep the merge bounded while the tab is hidden.
  if (pending.jobs.size > 4 * TABLE_ROWS) {
    const keep = [...pending.jobs.values()].sort((a, b) => b.at - a.at).slice(0, 2 * TABLE_ROWS);
    pending.jobs = new Map(keep.map((job) => [job.id, job]));
    scheduleResync("overflow");
  }
  if (resyncing) replay.push(...(message.jobs || []));
  if (message.truncated > 0) scheduleResync("truncated");
  if (Object.keys(deltas).length) statsSoon();
  if (!frameRequested) {
    frameRequested = true;
    requestAnimationFrame(applyPending);
  }
}

function applyPending() {
  frameRequested = false;
  const { deltas, jobs } = pending;
  pending = { deltas: {}, jobs: new Map() };
  counters.add(deltas);
  const newest = [...jobs.values()].sort((a, b) => b.at - a.at);
  let moved = false;
  let workersChanged = false;
  for (const job of newest) {
    if (workers.track(job)) workersChanged = true;
    dead.track(job);
  }
  for (const job of newest.slice(0, TABLE_ROWS)) if (table.upsert(job, job.at)) moved = true;
  if (moved) table.order();
  if (workersChanged) workers.render();
}

// ---- resync from the API (first load, every reconnect, after dropped events)

function scheduleResync(reason) {
  if (resyncTimer) return;
  const wait = Math.max(0, lastResync + RESYNC_MIN_INTERVAL_MS - Date.now());
  resyncTimer = setTimeout(() => {
    resyncTimer = null;
    resync(reason);
  }, wait);
}

async function resync() {
  if (resyncing) {
    resyncAgain = true;
    return;
  }
  resyncing = true;
  replay = [];
  lastResync = Date.now();
  lastStats = Date.now();
  const query = new URLSearchParams({ page_size: String(TABLE_ROWS) });
  for (const [key, value] of Object.entries(filters)) if (value) query.set(key, value);
  const [stats, jobs] = await Promise.all([api("stats/"), api(`jobs/?${query}`), workers.refresh(), dead.refresh()]);
  if (stats.ok) applyStats(stats.data);
  if (jobs.ok) {
    table.clear();
    for (const job of results(jobs.data)) table.upsert(job, seconds(job.updated_at || job.created_at));
    // Events that arrived while the snapshot was being read may be newer than it.
    for (const job of replay) table.upsert(job, job.at);
    table.order();
  }
  replay = [];
  resyncing = false;
  if (resyncAgain) {
    resyncAgain = false;
    scheduleResync("again");
  }
}

// ---- filters and tabs (kept in the URL)

const live = connectLive({
  subscription: () => ({
    action: "subscribe",
    filters: {
      status: filters.status ? [filters.status] : [],
      queue: filters.queue ? [filters.queue] : [],
      type: filters.type ? [filters.type] : [],
    },
    job: null,
  }),
  onHello: () => resync("connected"),
  onFrame,
});

function writeUrl() {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(filters)) if (value) query.set(key, value);
  if (tab !== "jobs") query.set("tab", tab);
  const search = query.toString();
  history.replaceState(null, "", search ? `?${search}` : location.pathname);
}

const form = document.getElementById("filters");
form.addEventListener("change", () => {
  for (const key of Object.keys(filters)) filters[key] = form.elements[key].value;
  writeUrl();
  live.resubscribe();
  lastResync = 0;
  resync("filters");
});
form.addEventListener("submit", (event) => event.preventDefault());

function showTab(name) {
  tab = name;
  for (const link of document.querySelectorAll("[role=tab]")) link.setAttribute("aria-selected", String(link.dataset.tab === name));
  document.getElementById("panel-jobs").hidden = name !== "jobs";
  document.getElementById("panel-dead").hidden = name !== "dead";
  writeUrl();
}
for (const link of document.querySelectorAll("[role=tab]")) {
  link.addEventListener("click", (event) => {
    event.preventDefault();
    showTab(link.dataset.tab);
  });
}
for (const link of document.querySelectorAll(".counter[data-status]")) {
  link.addEventListener("click", (event) => {
    event.preventDefault();
    form.elements.status.value = filters.status === link.dataset.status ? "" : link.dataset.status;
    showTab("jobs");
    form.dispatchEvent(new Event("change"));
  });
}

setInterval(() => {
  if (document.visibilityState !== "visible") return;
  chart.draw();
  queues.render();
}, 1000);
// Worker heartbeats are not events, and channel-layer messages can be dropped: a slow background
// re-read keeps the workers list and the counters honest. Everything else arrives pushed.
setInterval(() => {
  if (document.visibilityState !== "visible" || isSignedOut()) return;
  workers.refresh();
  statsSoon();
}, BACKGROUND_REFRESH_MS);
chart.draw();
