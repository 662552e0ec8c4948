/*
 * What the server told this page (views._page_config, passed with json_script, so it is data and
 * never interpolated into script). Module scripts run after the document is parsed, so the element
 * is there when this module is evaluated.
 */
export const cfg = JSON.parse(document.getElementById("dashboard-config").textContent);
export const STATUSES = cfg.statuses;
export const TERMINAL = new Set(cfg.terminal);
