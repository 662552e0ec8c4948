/*
 * jobqueue dashboard: plain JavaScript, no build step.
 *
 * The pages are rendered by Django; this script keeps them live. A websocket
 * (/ws/dashboard/) delivers coalesced status-event frames, a few per second at
 * most; frames are merged as they arrive and applied to the DOM once per
 * animation frame, touching only the rows and counters that changed. After a
 * (re)connect, or when a frame says events were dropped (truncated > 0), the
 * page resyncs from the REST API. Reads and writes go through the API with the
 * session cookie (CSRF header on writes).
 *
 * Everything that comes from the server is put into the DOM as text
 * (textContent / text nodes), never as HTML.
 */
(() => {
  "use strict";

  const cfg = JSON.parse(document.getElementById("dashboard-config").textContent);
  const STATUSES = cfg.statuses;
  const TERMINAL = new Set(cfg.terminal);
  const TABLE_ROWS = 100;
  const DEAD_ROWS = 100;
  const RESYNC_MIN_INTERVAL_MS = 3000; // truncated frames under load resync at most this often
  const STATS_MIN_INTERVAL_MS = 2000; // queue depths follow events at most this often
  const BACKGROUND_REFRESH_MS = 15000; // workers' heartbeats and counter drift: re-read this often
  const CHART_SECONDS = 300;

  // ------------------------------------------------------------------ helpers

  /** Build an element; string children become text nodes, so data is never parsed as HTML. */
  function h(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function setText(node, value) {
    const text = value === null || value === undefined || value === "" ? "–" : String(value);
    if (node && node.textContent !== text) node.textContent = text;
  }

  function cookie(name) {
    for (const part of document.cookie.split(";")) {
      const [key, ...rest] = part.trim().split("=");
      if (key === name) return decodeURIComponent(rest.join("="));
    }
    return "";
  }

  /** Call the REST API; never throws: {ok, status, data}. */
  async function api(path, { method = "GET", body } = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET") headers["X-CSRFToken"] = cookie("csrftoken");
    let response;
    try {
      response = await fetch(cfg.api + path, {
        method,
        headers,
        credentials: "same-origin",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      return { ok: false, status: 0, data: { detail: `network error: ${error.message}` } };
    }
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (response.status === 401 || response.status === 403) signedOutHint(response.status, data);
    return { ok: response.ok, status: response.status, data };
  }

  function results(data) {
    if (Array.isArray(data)) return data;
    return data && Array.isArray(data.results) ? data.results : [];
  }

  const jobUrl = (id) => `/jobs/${encodeURIComponent(id)}/`;
  const knownStatus = (status) => (STATUSES.includes(status) ? status : "unknown");
  const seconds = (iso) => (iso ? Date.parse(iso) / 1000 : 0);

  function badge(status, text) {
    return h("span", { class: `badge badge-${String(status).replace(/[^a-z_]/g, "")}` }, text ?? status);
  }

  function setBadge(node, status) {
    node.className = `badge badge-${knownStatus(status)}`;
    node.dataset.status = status;
    node.textContent = status;
  }

  function fmtTime(value) {
    if (!value) return "–";
    const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    if (Number.isNaN(date.getTime())) return "–";
    const pad = (n) => String(n).padStart(2, "0");
    return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  }

  function fmtDateTime(value) {
    if (!value) return "–";
    const date = new Date(value);
    if (Number.isNaN(date.getTime())) return "–";
    const pad = (n) => String(n).padStart(2, "0");
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${fmtTime(value)}`;
  }

  function fmtAge(total) {
    if (total === null || total === undefined || Number.isNaN(total)) return "–";
    const s = Math.max(0, Math.round(total));
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  }

  function fmtCount(n) {
    return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US");
  }

  // ------------------------------------------------------------------ connection indicator + websocket

  const conn = document.getElementById("conn");
  const connText = conn.querySelector(".conn-text");
  let signedOut = false;

  function showConnection(state, message) {
    if (signedOut) return;
    conn.dataset.state = state;
    connText.textContent = message;
  }

  function signedOutHint(status, data) {
    if (signedOut) return;
    signedOut = true;
    conn.dataset.state = "down";
    connText.textContent = "";
    const next = encodeURIComponent(location.pathname + location.search);
    connText.append(
      status === 403 && data && data.detail ? `${data.detail} ` : "signed out · ",
      h("a", { href: `/admin/login/?next=${next}` }, "log in"),
    );
  }

  /**
   * Keep one websocket open: the indicator shows its state; a lost connection is retried with
   * exponential backoff (0.5 s doubling to 10 s, jittered). Every "hello" (first connect and each
   * reconnect) sends the page's subscription and calls onHello, which resyncs from the API.
   */
  function connectLive({ subscription, onHello, onFrame }) {
    let socket = null;
    let attempt = 0;
    let retryTimer = null;
    let countdown = null;

    function open() {
      clearTimeout(retryTimer);
      clearInterval(countdown);
      showConnection("connecting", attempt ? "reconnecting…" : "connecting…");
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      let ws;
      try {
        ws = new WebSocket(scheme + location.host + cfg.ws);
      } catch {
        retry();
        return;
      }
      socket = ws;
      ws.onmessage = (event) => {
        let message;
        try {
          message = JSON.parse(event.data);
        } catch {
          return;
        }
        if (message.type === "hello") {
          attempt = 0;
          showConnection("live", "live");
          ws.send(JSON.stringify(subscription()));
          onHello();
        } else if (message.type === "batch") {
          onFrame(message);
        }
      };
      ws.onclose = (event) => {
        if (socket !== ws) return;
        socket = null;
        if (event.code === 4401) {
          signedOutHint(401, null);
          return;
        }
        retry();
      };
    }

    function retry() {
      const delay = Math.min(10000, 500 * 2 ** attempt) * (0.75 + Math.random() * 0.5);
      attempt += 1;
      let left = Math.ceil(delay / 1000);
      showConnection("down", `disconnected · retrying in ${left}s`);
      countdown = setInterval(() => {
        left -= 1;
        if (left > 0) showConnection("down", `disconnected · retrying in ${left}s`);
      }, 1000);
      retryTimer = setTimeout(open, delay);
    }

    // Coming back online or to the tab: do not sit out the rest of a long backoff.
    const retryNow = () => {
      if (!socket && !signedOut && document.visibilityState === "visible") open();
    };
    window.addEventListener("online", retryNow);
    document.addEventListener("visibilitychange", retryNow);
    open();
    return {
      resubscribe() {
        if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(subscription()));
      },
    };
  }

  // ------------------------------------------------------------------ dashboard (/)

  function dashboardPage() {
    const filters = { status: cfg.filters.status || "", queue: cfg.filters.queue || "", type: cfg.filters.type || "" };
    let tab = cfg.tab;
    const counts = {};
    const counterNodes = {};
    for (const node of document.querySelectorAll("[data-counter]")) counterNodes[node.dataset.counter] = node;
    const jobRows = new Map(); // id -> {job, at, tr, cells}
    const tbody = document.getElementById("job-rows");
    const deadBody = document.getElementById("dead-rows");
    const deadRows = new Map(); // job id -> {tr, state}
    let openDead = null;
    const workers = new Map(); // worker id -> {info, jobs:Set}
    const queueInfo = new Map(); // queue -> {ready, delayed, running, oldest, fetchedAt}

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
    let deltaLog = []; // [{t: server time of the frame, deltas}] for the last minute

    // ---- throughput chart: one bucket per second for the last 5 minutes, fed by counter deltas
    const chartDone = new Float64Array(CHART_SECONDS);
    const chartFailed = new Float64Array(CHART_SECONDS);
    const chartStamp = new Float64Array(CHART_SECONDS);
    const nowSecond = () => Math.floor(Date.now() / 1000);

    function chartAdd(deltas) {
      const done = Math.max(0, deltas.succeeded || 0) + Math.max(0, deltas.failed || 0);
      const failed = Math.max(0, deltas.failed || 0);
      if (!done && !failed) return;
      const second = nowSecond();
      const slot = second % CHART_SECONDS;
      if (chartStamp[slot] !== second) {
        chartStamp[slot] = second;
        chartDone[slot] = 0;
        chartFailed[slot] = 0;
      }
      chartDone[slot] += done;
      chartFailed[slot] += failed;
    }

    function chartSeries(values, now) {
      const out = [];
      for (let i = CHART_SECONDS - 1; i >= 0; i -= 1) {
        const second = now - i;
        const slot = second % CHART_SECONDS;
        out.push(chartStamp[slot] === second ? values[slot] : 0);
      }
      return out;
    }

    function drawChart() {
      const now = nowSecond() - 1; // the current second is still filling
      const done = chartSeries(chartDone, now);
      const failed = chartSeries(chartFailed, now);
      const peak = Math.max(1, ...done);
      const scale = 10 ** Math.floor(Math.log10(peak));
      const top = Math.ceil(peak / scale) * scale;
      const points = (series) =>
        series.map((v, i) => `${i},${(100 - (v / top) * 96).toFixed(1)}`).join(" ");
      document.getElementById("chart-done").setAttribute("points", points(done));
      document.getElementById("chart-failed").setAttribute("points", points(failed));
      setText(document.getElementById("chart-max"), fmtCount(top));
      const recent = (series) => series.slice(-10).reduce((a, b) => a + b, 0) / 10;
      setText(document.getElementById("rate-done"), recent(done).toFixed(1));
      setText(document.getElementById("rate-failed"), recent(failed).toFixed(1));
    }

    // ---- counters and queues
    function renderCounters() {
      for (const status of STATUSES) setText(counterNodes[status], fmtCount(counts[status]));
    }

    function queueRow(name) {
      const body = document.getElementById("queue-rows");
      for (const row of body.rows) if (row.dataset.queue === name) return row;
      const row = h("tr", { dataset: { queue: name } }, h("th", { scope: "row" }, name));
      for (let i = 0; i < 4; i += 1) row.append(h("td", null, "–"));
      body.append(row);
      return row;
    }

    function renderQueues() {
      const now = Date.now();
      for (const [name, info] of queueInfo) {
        const cells = queueRow(name).cells;
        setText(cells[1], fmtCount(info.ready));
        setText(cells[2], fmtCount(info.delayed));
        setText(cells[3], fmtCount(info.running));
        const age = info.oldest === null ? null : info.oldest + (now - info.fetchedAt) / 1000;
        setText(cells[4], info.ready ? fmtAge(age) : "–");
      }
    }

    /** The oldest waiting job's age in seconds, from whichever field the stats API provides. */
    function oldestAge(depth, generatedAt) {
      if (typeof depth.oldest_age_seconds === "number") return depth.oldest_age_seconds;
      if (typeof depth.oldest_age === "number") return depth.oldest_age;
      const since = depth.oldest_ready_at || depth.oldest_queued_at || depth.oldest_at;
      if (since) return (Date.parse(generatedAt || Date()) - Date.parse(since)) / 1000;
      return null;
    }

    /**
     * Counters = the snapshot + the deltas that arrived after it was taken. Active counts come from
     * PostgreSQL (``postgres.as_of``, cached a few seconds server-side), finished ones from the live
     * Redis counters (``generated_at``); replaying the logged deltas newer than each makes every
     * snapshot correct the counters instead of setting them back in time.
     */
    function applyStats(stats) {
      if (!stats) return;
      pending.deltas = {}; // not applied yet, but already in the delta log replayed below
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
      renderCounters();
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
      renderQueues();
      const summary = (w) =>
        w ? `${fmtCount(w.finished ?? w.succeeded)} finished, ${fmtCount(w.failures ?? w.failed)} failures` : "–";
      setText(document.getElementById("last-minute"), summary(stats.last_minute));
      setText(document.getElementById("last-hour"), summary(stats.last_hour));
      const dead = stats.postgres && stats.postgres.open_dead_letters;
      if (typeof dead === "number") setOpenDead(dead);
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

    // ---- workers
    function applyWorkers(list) {
      const seen = new Set();
      for (const info of list) {
        seen.add(info.id);
        workers.set(info.id, { info, jobs: new Set(info.current_jobs || []) });
      }
      for (const id of [...workers.keys()]) if (!seen.has(id)) workers.delete(id);
      renderWorkers();
    }

    async function refreshWorkers() {
      const response = await api("workers/");
      if (response.ok) applyWorkers(results(response.data));
    }

    function renderWorkers() {
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

    function trackWorkerJob(job) {
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

    // ---- job table
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

    /** Insert or update one job's row (a stale update, older than the row, is ignored). */
    function upsertJob(job, at) {
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
    function orderRows() {
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

    // ---- dead letters
    function setOpenDead(n) {
      openDead = Math.max(0, n);
      document.getElementById("dead-count").textContent = openDead ? String(openDead) : "";
    }

    function upsertDead(item) {
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

    function trackDead(job) {
      const entry = deadRows.get(job.id);
      const open = entry && entry.tr.dataset.state === "open";
      if (job.status === "failed" && !open) {
        upsertDead({
          job_id: job.id,
          job_type: job.type,
          queue: job.queue,
          reason: job.error,
          attempts: job.attempts,
          dead_at: job.finished_at || new Date(job.at * 1000).toISOString(),
          resolution: "open",
        });
        if (openDead !== null) setOpenDead(openDead + 1);
      } else if (job.status !== "failed" && open) {
        setBadge(entry.state, "retried");
        entry.tr.dataset.state = "retried";
        if (openDead !== null) setOpenDead(openDead - 1);
      }
    }

    async function refreshDead() {
      const response = await api("dead-letters/?page_size=50");
      if (!response.ok) return;
      deadRows.clear();
      deadBody.replaceChildren();
      for (const item of results(response.data)) upsertDead(item);
      document.getElementById("dead-empty").hidden = deadRows.size > 0;
    }

    // ---- applying frames
    function onFrame(message) {
      const deltas = message.deltas || {};
      chartAdd(deltas);
      if (Object.keys(deltas).length) {
        const t = message.sent_at || Date.now() / 1000;
        deltaLog.push({ t, deltas });
        if (deltaLog.length > 600 || deltaLog[0].t < t - 60) deltaLog = deltaLog.filter((e) => e.t >= t - 60);
      }
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
      let countersChanged = false;
      for (const [status, n] of Object.entries(deltas)) {
        if (counts[status] === undefined) continue; // unknown until the first snapshot
        counts[status] = Math.max(0, counts[status] + n);
        countersChanged = true;
      }
      if (countersChanged) renderCounters();
      const newest = [...jobs.values()].sort((a, b) => b.at - a.at);
      let moved = false;
      let workersChanged = false;
      for (const job of newest) {
        if (trackWorkerJob(job)) workersChanged = true;
        trackDead(job);
      }
      for (const job of newest.slice(0, TABLE_ROWS)) if (upsertJob(job, job.at)) moved = true;
      if (moved) orderRows();
      if (workersChanged) renderWorkers();
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
      const [stats, jobs] = await Promise.all([
        api("stats/"),
        api(`jobs/?${query}`),
        refreshWorkers(),
        refreshDead(),
      ]);
      if (stats.ok) applyStats(stats.data);
      if (jobs.ok) {
        for (const entry of jobRows.values()) entry.tr.remove();
        jobRows.clear();
        for (const job of results(jobs.data)) upsertJob(job, seconds(job.updated_at || job.created_at));
        // Events that arrived while the snapshot was being read may be newer than it.
        for (const job of replay) upsertJob(job, job.at);
        orderRows();
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
      drawChart();
      renderQueues();
    }, 1000);
    // Worker heartbeats are not events, and channel-layer messages can be dropped: a slow background
    // re-read keeps the workers list and the counters honest. Everything else arrives pushed.
    setInterval(() => {
      if (document.visibilityState !== "visible" || signedOut) return;
      refreshWorkers();
      statsSoon();
    }, BACKGROUND_REFRESH_MS);
    drawChart();
  }

  // ------------------------------------------------------------------ job page (/jobs/<id>/)

  function jobPage() {
    const jobId = cfg.job.id;
    const state = { status: cfg.job.status, cancelRequested: cfg.job.cancel_requested };
    const statusNode = document.getElementById("job-status");
    const retryButton = document.getElementById("btn-retry");
    const cancelButton = document.getElementById("btn-cancel");
    const message = document.getElementById("action-message");
    let refreshTimer = null;
    let lastAt = 0;

    function updateButtons() {
      retryButton.hidden = !(cfg.can.change && (state.status === "failed" || state.status === "cancelled"));
      cancelButton.hidden = !(cfg.can.change && !TERMINAL.has(state.status) && !state.cancelRequested);
    }

    function applyStatus(job) {
      state.status = job.status;
      if (statusNode.dataset.status !== job.status) setBadge(statusNode, job.status);
      setText(document.getElementById("job-attempts"), job.attempts);
      if (job.max_attempts) setText(document.getElementById("job-max-attempts"), job.max_attempts);
      setText(document.getElementById("job-worker"), job.worker);
      setText(document.getElementById("job-run-at"), fmtDateTime(job.run_at));
      setText(document.getElementById("job-started"), fmtDateTime(job.started_at));
      setText(document.getElementById("job-finished"), fmtDateTime(job.finished_at));
      updateButtons();
    }

    function applyDetail(job) {
      state.cancelRequested = Boolean(job.cancel_requested_at);
      applyStatus(job);
      setText(document.getElementById("job-cancel-requested"), job.cancel_requested_at ? fmtDateTime(job.cancel_requested_at) : "no");
      const result = document.getElementById("job-result");
      const hasResult = job.result !== null && job.result !== undefined;
      result.textContent = hasResult ? JSON.stringify(job.result, null, 2) : "";
      result.hidden = !hasResult;
      document.getElementById("job-no-result").hidden = hasResult;
      const error = document.getElementById("job-error");
      error.textContent = job.error || "";
      error.hidden = !job.error;
      document.getElementById("job-no-error").hidden = Boolean(job.error);
      const attempts = job.attempt_history || [];
      const rows = attempts.map((a) =>
        h(
          "tr",
          { dataset: { attempt: a.number } },
          h("td", null, a.number),
          h("td", null, badge(a.outcome, String(a.outcome).replace("_", " "))),
          h("td", { class: "mono" }, a.worker || "–"),
          h("td", null, fmtDateTime(a.started_at)),
          h("td", null, fmtDateTime(a.finished_at)),
          h("td", null, typeof a.duration === "number" ? `${a.duration.toFixed(3)} s` : "–"),
          h(
            "td",
            null,
            a.error
              ? h(
                  "details",
                  null,
                  h("summary", null, a.error.length > 120 ? `${a.error.slice(0, 119)}…` : a.error),
                  h("pre", { class: "traceback" }, a.traceback || a.error),
                )
              : "–",
          ),
        ),
      );
      document.getElementById("attempt-rows").replaceChildren(...rows);
      document.getElementById("attempts-empty").hidden = rows.length > 0;
    }

    async function refresh() {
      clearTimeout(refreshTimer);
      refreshTimer = null;
      const response = await api(`jobs/${encodeURIComponent(jobId)}/`);
      if (response.ok) applyDetail(response.data);
    }

    function refreshSoon() {
      if (!refreshTimer) refreshTimer = setTimeout(refresh, 150);
    }

    connectLive({
      subscription: () => ({ action: "subscribe", filters: {}, job: jobId }),
      onHello: refresh,
      onFrame: (frame) => {
        for (const job of frame.jobs || []) {
          if (job.id !== jobId || (job.at || 0) < lastAt) continue;
          lastAt = job.at || 0;
          applyStatus(job);
          refreshSoon(); // result, error and attempts are not in events
        }
      },
    });

    async function act(button, action, success) {
      button.disabled = true;
      message.className = "message";
      message.textContent = "…";
      const response = await api(`jobs/${encodeURIComponent(jobId)}/${action}/`, { method: "POST", body: {} });
      button.disabled = false;
      if (response.ok) {
        message.className = "message ok";
        message.textContent = success(response.data || {});
        if (response.data && response.data.id) {
          state.cancelRequested = Boolean(response.data.cancel_requested_at);
          applyStatus(response.data);
        }
        refresh(); // the action's answer has no attempt history: read the full job
      } else {
        message.className = "message err";
        const detail = response.data && (response.data.detail || JSON.stringify(response.data));
        message.textContent = `${response.status || "error"}: ${detail || "request failed"}`;
        refresh();
      }
    }

    retryButton.addEventListener("click", () =>
      act(retryButton, "retry", (job) => `Retried: the job is ${job.status || "queued"} again.`),
    );
    cancelButton.addEventListener("click", () =>
      act(cancelButton, "cancel", (job) =>
        job.status === "cancelled" ? "Cancelled." : "Cancel requested: the worker will stop the job.",
      ),
    );
    updateButtons();
  }

  // ------------------------------------------------------------------ create page (/create/)

  function createPage() {
    conn.hidden = true; // nothing live on this page
    const form = document.getElementById("create-form");
    const typeSelect = document.getElementById("f-type");
    const typeHelp = document.getElementById("type-help");
    const parseHelp = document.getElementById("payload-parse");
    const formErrors = document.getElementById("form-errors");
    const types = new Map();

    function describe(type) {
      const params = (type.parameters || [])
        .filter((p) => p.kind !== "var_positional" && p.kind !== "var_keyword")
        .map((p) => (p.required ? `${p.name} (required)` : `${p.name} = ${JSON.stringify(p.default)}`));
      const parts = [];
      if (type.description) parts.push(type.description.split("\n")[0]);
      if (params.length) parts.push(`parameters: ${params.join(", ")}`);
      if (type.queue) parts.push(`queue ${type.queue}`);
      return parts.join(" · ");
    }

    async function loadTypes() {
      const response = await api("job-types/");
      const list = response.ok ? results(response.data) : [];
      const options = [h("option", { value: "" }, list.length ? "choose a job type…" : "no job types available")];
      for (const type of list) {
        types.set(type.name, type);
        options.push(h("option", { value: type.name }, type.name));
      }
      typeSelect.replaceChildren(...options);
      const wanted = new URLSearchParams(location.search).get("type");
      if (wanted && types.has(wanted)) typeSelect.value = wanted;
      typeSelect.dispatchEvent(new Event("change"));
      if (!response.ok) showErrors(response.data, response.status);
    }

    typeSelect.addEventListener("change", () => {
      const type = types.get(typeSelect.value);
      typeHelp.textContent = type ? describe(type) : "";
    });

    const payload = document.getElementById("f-payload");
    payload.addEventListener("input", () => {
      try {
        JSON.parse(payload.value || "{}");
        parseHelp.textContent = "";
      } catch (error) {
        parseHelp.textContent = `not valid JSON yet: ${error.message}`;
      }
    });

    function clearErrors() {
      formErrors.hidden = true;
      formErrors.replaceChildren();
      for (const field of form.querySelectorAll(".field")) {
        field.classList.remove("invalid");
        field.querySelector(".errors").replaceChildren();
      }
    }

    function showErrors(data, status) {
      const general = [];
      if (data && typeof data === "object" && !Array.isArray(data)) {
        for (const [name, messages] of Object.entries(data)) {
          const list = Array.isArray(messages) ? messages : [messages];
          const field = form.querySelector(`.field[data-field="${CSS.escape(name)}"]`);
          if (field) {
            field.classList.add("invalid");
            field.querySelector(".errors").replaceChildren(...list.map((m) => h("li", null, typeof m === "string" ? m : JSON.stringify(m))));
          } else {
            const label = name === "detail" || name === "non_field_errors" ? "" : `${name}: `;
            for (const m of list) general.push(label + (typeof m === "string" ? m : JSON.stringify(m)));
          }
        }
      } else {
        general.push(`request failed (${status || "network error"})`);
      }
      if (general.length) {
        formErrors.replaceChildren(...general.flatMap((m, i) => (i ? [h("br"), m] : [m])));
        formErrors.hidden = false;
      }
    }

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors();
      const body = { type: typeSelect.value };
      const text = payload.value.trim() || "{}";
      try {
        body.payload = JSON.parse(text);
      } catch {
        body.payload = text; // let the API say what is wrong with it, as for any other client
      }
      const value = (name) => form.elements[name].value.trim();
      if (value("queue")) body.queue = value("queue");
      for (const name of ["priority", "max_attempts"]) {
        if (value(name)) body[name] = Number.isNaN(Number(value(name))) ? value(name) : Number(value(name));
      }
      if (value("run_at")) {
        const when = new Date(value("run_at"));
        body.run_at = Number.isNaN(when.getTime()) ? value("run_at") : when.toISOString();
      }
      const submit = document.getElementById("create-submit");
      submit.disabled = true;
      const response = await api("jobs/", { method: "POST", body });
      submit.disabled = false;
      if (response.status === 201 && response.data && response.data.id) {
        location.assign(jobUrl(response.data.id));
        return;
      }
      showErrors(response.data, response.status);
    });

    loadTypes();
  }

  if (cfg.page === "index") dashboardPage();
  else if (cfg.page === "job") jobPage();
  else if (cfg.page === "create") createPage();
})();
