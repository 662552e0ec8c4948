/*
 * Building and updating DOM nodes. Everything that comes from the server goes in as text
 * (textContent / text nodes), never as HTML: this module is where that rule is kept.
 */
import { STATUSES } from "./config.js";

/** Build an element; string children become text nodes, so data is never parsed as HTML. */
export function h(tag, props, ...children) {
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

/** Set a node's text ("–" for nothing), touching the DOM only when it changes. */
export function setText(node, value) {
  const text = value === null || value === undefined || value === "" ? "–" : String(value);
  if (node && node.textContent !== text) node.textContent = text;
}

const knownStatus = (status) => (STATUSES.includes(status) ? status : "unknown");

/** A new status pill; the class keeps only [a-z_], so a value cannot inject another class. */
export function badge(status, text) {
  return h("span", { class: `badge badge-${String(status).replace(/[^a-z_]/g, "")}` }, text ?? status);
}

/** Turn an existing node into the pill for ``status`` (an unknown status gets the neutral colour). */
export function setBadge(node, status) {
  node.className = `badge badge-${knownStatus(status)}`;
  node.dataset.status = status;
  node.textContent = status;
}
