// Tenant admin: keys (a new key is shown once, revoke), then one read-only table per section the role
// may read (usage, webhooks, presets, templates, schedules, audit), each from its API list.
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

async function loadSection(section) {
  const holder = section.querySelector(".table-wrap");
  try {
    const data = await api(section.dataset.endpoint);
    const items = itemsOf(data);
    holder.replaceChildren(items ? table(items) : el("dl", { class: "facts" }, Object.entries(data).map(([k, v]) => el("div", {}, el("dt", {}, k.replaceAll("_", " ")), el("dd", {}, format(v))))));
  } catch (e) { holder.replaceChildren(el("p", { class: "error" }, e.message)); }
}

loadKeys().catch((e) => showError(error, e));
for (const section of main.querySelectorAll("section[data-section]")) loadSection(section);
