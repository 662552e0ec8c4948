/* Turning API values into short display text, and ids into page links. */

/** A job page's path; the id is URL-encoded, so it cannot leave its path segment. */
export const jobUrl = (id) => `/jobs/${encodeURIComponent(id)}/`;

/** An ISO timestamp as epoch seconds (0 for none), the unit the events' ``at`` uses. */
export const seconds = (iso) => (iso ? Date.parse(iso) / 1000 : 0);

/** HH:MM:SS in local time, from epoch seconds or an ISO string. */
export function fmtTime(value) {
  if (!value) return "–";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return "–";
  const pad = (n) => String(n).padStart(2, "0");
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

/** YYYY-MM-DD HH:MM:SS in local time, from an ISO string. */
export function fmtDateTime(value) {
  if (!value) return "–";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return "–";
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${fmtTime(value)}`;
}

/** A duration in seconds as its two largest units ("4m 12s", "3h 5m"). */
export function fmtAge(total) {
  if (total === null || total === undefined || Number.isNaN(total)) return "–";
  const s = Math.max(0, Math.round(total));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

/** A count with thousands separators, fixed to en-US so every browser shows the same text. */
export function fmtCount(n) {
  return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US");
}
