// Tenant admin: keys (a new key is shown once, revoke), then one table per section the role may read
// (usage, cost per day, webhooks with each one's delivery log and Replay, presets, templates, schedules,
// audit), each from its API list.
import { announce, api, el, format, itemsOf, showError, table, when } from "./api.js";

const main = document.getElementById("main");
const error = document.getElementById("admin-error");
const $ = (id) => document.getElementById(id);
const tenant = main.dataset.tenant;

async function loadKeys() {
  const holder = $("keys");
  if (!holder) return;
  const keys = itemsOf(await api(`/v1/keys?tenant=${encodeURIComponent(tenant)}`)) || [];
  holder.replaceChildren(table(keys, ["id", "prefix", "description", "role", "created_at", "last_used_at", "revoke"], {
    created_at: (k) => when(k.created_at),
    last_used_at: (k) => when(k.last_used_at),
    revoke: (k) => (k.revoked_at ? "–" : el("button", { type: "button", class: "danger", "data-revoke": k.id }, "Revoke")),
  }));
}

$("keys")?.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-revoke]");
  if (!button || !confirm("Revoke this key? Programs using it stop working.")) return;
  try { await api(`/v1/keys/${button.dataset.revoke}/revoke`, { method: "POST" }); announce("Key revoked"); loadKeys(); } catch (e) { showError(error, e); }
});

$("key-form")?.addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const created = await api("/v1/keys", { method: "POST", body: { tenant, description: $("key-description").value, role: $("key-role").value } });
    const note = $("new-key");
    note.replaceChildren(el("p", {}, "Copy the new key now: it is not shown again."), el("code", { "data-testid": "new-key" }, created.key ?? format(created)));
    note.hidden = false;
    loadKeys();
  } catch (e) { showError(error, e); }
});

const canReplay = main.dataset.canReplay === "true";

function money(costs) {
  return costs?.length ? costs.map((c) => `${Number(c.amount).toFixed(c.amount < 0.01 ? 6 : 2)} ${c.currency}`).join(" + ") : "–";
}

function usageByDay(data) {
  return table(data.items, ["day", "jobs", "succeeded", "cpu_hours", "gpu_hours", "kwh", "cost"], { cost: (d) => money(d.cost) });
}

// Each endpoint's delivery log (newest first) under its row; Replay sends a delivery again (a new one).
async function deliveryLog(hook) {
  const id = `deliveries-${hook.id}`;
  const log = el("div", { class: "table-wrap", id });
  try {
    const deliveries = (await api(`/v1/webhooks/${hook.id}/deliveries?limit=20`)).items;
    log.append(table(deliveries, ["id", "event_id", "state", "response_status", "latency_ms", "attempts", "created_at", ...(canReplay ? ["replay"] : [])], {
      created_at: (d) => when(d.created_at),
      latency_ms: (d) => (d.latency_ms === null || d.latency_ms === undefined ? "–" : `${d.latency_ms} ms`),
      replay: (d) => el("button", { type: "button", "data-replay": d.id, "data-hook": hook.id, "aria-label": `Replay delivery ${d.id}` }, "Replay"),
    }));
  } catch (e) { log.append(el("p", { class: "error" }, e.message)); }
  return el("div", { class: "stack", "data-testid": "delivery-log" },
    el("h3", {}, `Deliveries to ${hook.url}`), log);
}

async function webhooks(data) {
  const hooks = itemsOf(data) || [];
  return el("div", {}, table(hooks, ["id", "url", "status", "enabled", "event_types", "created_at"], {
    created_at: (h) => when(h.created_at),
    event_types: (h) => h.event_types.join(", "),
  }), ...(await Promise.all(hooks.map(deliveryLog))));
}

main.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-replay]");
  if (!button) return;
  try {
    const again = await api(`/v1/webhooks/${button.dataset.hook}/deliveries/${button.dataset.replay}/replay`, { method: "POST" });
    announce(`Delivery ${button.dataset.replay} replayed as delivery ${again.id}`);
    const section = main.querySelector("section[data-section=webhooks]");
    await loadSection(section);
  } catch (e) { showError(error, e); }
});

const RENDERERS = { "usage-days": usageByDay, webhooks };

async function loadSection(section) {
  const holder = section.querySelector(".table-wrap");
  try {
    const data = await api(section.dataset.endpoint);
    const special = RENDERERS[section.dataset.section];
    if (special) { holder.replaceChildren(await special(data)); return; }
    const items = itemsOf(data);
    holder.replaceChildren(items ? table(items) : el("dl", { class: "facts" }, Object.entries(data).map(([k, v]) => el("div", {}, el("dt", {}, k.replaceAll("_", " ")), el("dd", {}, format(v))))));
  } catch (e) { holder.replaceChildren(el("p", { class: "error" }, e.message)); }
}

loadKeys().catch((e) => showError(error, e));
for (const section of main.querySelectorAll("section[data-section]")) loadSection(section);
