/*
 * The REST API, the pages' one way to read and write after the first paint: the session cookie
 * authenticates, writes carry the CSRF header. A 401/403 shows "signed out" in the indicator.
 */
import { cfg } from "./config.js";
import { signedOutHint } from "./indicator.js";

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return "";
}

/** Call the REST API; never throws: {ok, status, data}. */
export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") {
    headers["X-CSRFToken"] = cookie("csrftoken");
    headers["X-Jobqueue-Client"] = "dashboard"; // the audit trail records these actions as via "dashboard"
  }
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

/** A list endpoint's items, paginated or not. */
export function results(data) {
  if (Array.isArray(data)) return data;
  return data && Array.isArray(data.results) ? data.results : [];
}
