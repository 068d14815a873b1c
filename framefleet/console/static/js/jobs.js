// The jobs list: filters kept in the URL, refreshed every few seconds while the page is visible.
import { api, el, showError, when } from "./api.js";

const form = document.getElementById("filters");
const body = document.getElementById("jobs-body");
const error = document.getElementById("jobs-error");
const more = document.getElementById("more");
const REFRESH_MS = 2000;
let cursor = null;
let paged = false; // a person who loaded more pages keeps them: no live refresh then

function query(extra = {}) {
  const params = new URLSearchParams();
  for (const [key, value] of new FormData(form)) {
    if (!value) continue;
    // Dates are whole days in the person's own time zone.
    params.set(key, key.startsWith("created_") ? new Date(`${value}T00:00:00`).toISOString() : value);
  }
  for (const [key, value] of Object.entries(extra)) params.set(key, value);
  return params;
}

function row(job, tenant) {
  const href = `/console/jobs/${encodeURIComponent(job.id)}${tenant ? `?tenant=${encodeURIComponent(tenant)}` : ""}`;
  return el("tr", { "data-job": job.id },
    el("td", {}, el("a", { href }, job.id)),
    el("td", {}, el("span", { class: `badge ${job.state}` }, job.state)),
    el("td", {}, job.priority),
    el("td", {}, job.template ? `${job.template.name} v${job.template.version}` : "—"),
    el("td", {}, el("progress", { max: 100, value: job.progress, "aria-label": `${job.progress} %` }), ` ${Math.round(job.progress)} %`),
    el("td", {}, when(job.created_at)));
}

async function load({ append = false } = {}) {
  const params = query(append && cursor ? { cursor } : {});
  try {
    const page = await api(`/v1/jobs?${params}`);
    error.hidden = true;
    const rows = page.items.map((job) => row(job, params.get("tenant")));
    paged = append || paged;
    if (append) body.append(...rows);
    else body.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 6 }, "No jobs match."))]));
    cursor = page.next_cursor;
    more.hidden = !cursor;
  } catch (e) {
    showError(error, e);
  }
}

function restore() {
  const params = new URLSearchParams(location.search);
  for (const field of form.elements) if (params.has(field.name)) field.value = params.get(field.name);
}

form.addEventListener("change", () => {
  paged = false;
  const params = new URLSearchParams();
  for (const [key, value] of new FormData(form)) if (value) params.set(key, value);
  history.replaceState(null, "", `?${params}`);
  load();
});
form.addEventListener("submit", (event) => event.preventDefault());
more.addEventListener("click", () => load({ append: true }));
restore();
load();
// Live: only the first page is refreshed (a person paging back keeps what they loaded).
setInterval(() => { if (!document.hidden && !paged) load(); }, REFRESH_MS);
