/*
 * Entry module of the create page (/create/): the enqueue form, posted to POST /api/jobs/ like any
 * other client's request, so the API's validation is the only validation and its field errors are
 * shown next to their fields. Nothing on this page is live.
 */
import { api, results } from "./api.js";
import { h } from "./dom.js";
import { jobUrl } from "./format.js";
import { hideIndicator } from "./indicator.js";

hideIndicator();
const form = document.getElementById("create-form");
const typeSelect = document.getElementById("f-type");
const typeHelp = document.getElementById("type-help");
const parseHelp = document.getElementById("payload-parse");
const formErrors = document.getElementById("form-errors");
const payload = document.getElementById("f-payload");
const types = new Map();

/** One line about a job type: its description, parameters and queue. */
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

/** The API's errors: field errors next to their field, the rest at the top of the form. */
function showErrors(data, status) {
  const general = [];
  if (data && typeof data === "object" && !Array.isArray(data)) {
    for (const [name, messages] of Object.entries(data)) {
      const list = Array.isArray(messages) ? messages : [messages];
      const field = form.querySelector(`.field[data-field="${CSS.escape(name)}"]`);
      if (field) {
        field.classList.add("invalid");
        field
          .querySelector(".errors")
          .replaceChildren(...list.map((m) => h("li", null, typeof m === "string" ? m : JSON.stringify(m))));
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
