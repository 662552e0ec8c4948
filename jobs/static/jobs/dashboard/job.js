/*
 * Entry module of the job page (/jobs/<id>/): follows the one job over the websocket and offers
 * Retry / Cancel through the API. Events carry the status only, so each one also re-reads the job
 * (result, error, attempts) from the API, debounced.
 */
import { api } from "./api.js";
import { TERMINAL, cfg } from "./config.js";
import { badge, h, setBadge, setText } from "./dom.js";
import { fmtDateTime } from "./format.js";
import { connectLive } from "./live.js";

const jobId = cfg.job.id;
const state = { status: cfg.job.status, cancelRequested: cfg.job.cancel_requested };
const statusNode = document.getElementById("job-status");
const retryButton = document.getElementById("btn-retry");
const cancelButton = document.getElementById("btn-cancel");
const message = document.getElementById("action-message");
let refreshTimer = null;
let lastAt = 0;

/** Offer only what the API would accept now (the server enforces it again). */
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
  setText(
    document.getElementById("job-cancel-requested"),
    job.cancel_requested_at ? fmtDateTime(job.cancel_requested_at) : "no",
  );
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
  applyOperatorActions(job.operator_actions);
}

/** The audit trail's latest entries; the API sends null to users who may not change jobs. */
function applyOperatorActions(actions) {
  const section = document.getElementById("operator-actions");
  section.hidden = !Array.isArray(actions);
  if (section.hidden) return;
  const rows = actions.map((a) =>
    h("tr", null, h("td", null, fmtDateTime(a.time)), h("td", null, a.user), h("td", null, a.action)),
  );
  document.getElementById("operator-action-rows").replaceChildren(...rows);
  document.getElementById("operator-actions-empty").hidden = rows.length > 0;
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
