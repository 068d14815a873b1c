// Fleet (operators): workers, queues, failures by class and pools, refreshed every few seconds;
// cordon/drain per worker.
import { api, el, itemsOf, showError, table, when } from "./api.js";

const canManage = document.getElementById("main").dataset.canManage === "true";
const error = document.getElementById("fleet-error");

async function hold(id, action) {
  try { await api(`/v1/workers/${encodeURIComponent(id)}/${action}`, { method: "POST" }); load(); } catch (e) { showError(error, e); }
}

function render(id, data, columns, cells) {
  const items = itemsOf(data);
  document.getElementById(id).replaceChildren(items ? table(items, columns, cells) : el("pre", {}, JSON.stringify(data, null, 2)));
}

async function load() {
  try {
    const [workers, queues, pools, failures] = await Promise.all([api("/v1/workers"), api("/v1/queues"), api("/v1/pools"), api("/v1/failures?hours=24")]);
    error.hidden = true;
    const actions = canManage ? { actions: (w) => el("span", { class: "row-actions" },
      ["cordon", "drain", "uncordon"].map((a) => el("button", { type: "button", "data-action": a, "data-worker": w.id ?? w.name }, a))) } : {};
    const first = itemsOf(workers)?.[0];
    const cols = first ? [...Object.keys(first).filter((k) => typeof first[k] !== "object" || first[k] === null).slice(0, 7), ...(canManage ? ["actions"] : [])] : undefined;
    render("workers", workers, cols, actions);
    render("queues", queues);
    render("pools", pools);
    document.getElementById("failures").replaceChildren(table(failures.classes, ["failure_class", "count", "last_at"], { last_at: (f) => when(f.last_at) }));
    document.getElementById("failures-recent").replaceChildren(failures.recent.length ? table(failures.recent, ["finished_at", "failure_class", "tenant", "job_id", "error"], {
      finished_at: (f) => when(f.finished_at),
      job_id: (f) => el("a", { href: `/console/jobs/${encodeURIComponent(f.job_id)}?tenant=${encodeURIComponent(f.tenant)}` }, f.job_id),
    }) : "");
  } catch (e) { showError(error, e); }
}

document.getElementById("workers").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (button) hold(button.dataset.worker, button.dataset.action);
});
load();
setInterval(() => { if (!document.hidden) load(); }, 5000);

