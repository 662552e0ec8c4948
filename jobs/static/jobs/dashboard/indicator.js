/*
 * The connection indicator in the top bar (#conn): live, connecting, down with a countdown, or
 * signed out with a login link. Signed out is final for the page: nothing overwrites it, and the
 * pages stop retrying and polling once it is shown.
 */
import { h } from "./dom.js";

const conn = document.getElementById("conn");
const connText = conn.querySelector(".conn-text");
let signedOut = false;

export const isSignedOut = () => signedOut;

export function showConnection(state, message) {
  if (signedOut) return;
  conn.dataset.state = state;
  connText.textContent = message;
}

/** The session is gone (HTTP 401/403, or close code 4401): say so, with a link back. */
export function signedOutHint(status, data) {
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

/** For a page with nothing live on it. */
export function hideIndicator() {
  conn.hidden = true;
}
