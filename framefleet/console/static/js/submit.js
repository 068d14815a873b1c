// Submit: a file and presets, a template with its parameters, or the JSON spec. The API validates;
// each error it names is shown at its field.
import { announce, api, bytes, el, itemsOf, showError } from "./api.js";
import { upload } from "./upload.js";

const form = document.getElementById("submit-form");
const $ = (id) => document.getElementById(id);
let templates = [];

function mode() { return new FormData(form).get("mode"); }

function switchMode() {
  for (const part of form.querySelectorAll("[data-mode]")) part.hidden = part.dataset.mode !== mode();
  if (mode() === "json" && !$("spec").value) $("spec").value = JSON.stringify(simpleBody(), null, 2);
}

function simpleBody() {
  const presets = [...$("presets").selectedOptions].map((o) => o.value);
  return {
    input: $("input").value.trim(),
    priority: $("priority").value,
    outputs: (presets.length ? presets : ["web-720p"]).map((preset) => ({ preset, name: preset })),
  };
}

function showParams() {
  const template = templates.find((t) => t.name === $("template").value);
  const params = Object.entries(template?.parameters || {});
  $("params").replaceChildren(...params.flatMap(([name, p]) => {
    const id = `param-${name}`;
    const type = p.type === "integer" || p.type === "number" ? "number" : p.type === "boolean" ? "checkbox" : "text";
    return [
      el("label", { for: id }, `${name}${p.required ? " (required)" : ""}`),
      el("input", { id, name, type, "data-param": name, "data-type": p.type, required: p.required, value: p.default ?? undefined, "aria-describedby": `${id}-error` }),
      el("p", { class: "field-error", id: `${id}-error`, hidden: true }),
    ];
  }));
}

function templateBody() {
  const params = {};
  for (const input of $("params").querySelectorAll("[data-param]")) {
    if (input.type === "checkbox") params[input.dataset.param] = input.checked;
    else if (input.value === "") continue;
    else params[input.dataset.param] = input.dataset.type === "integer" || input.dataset.type === "number" ? Number(input.value) : input.value;
  }
  return { template: $("template").value, params };
}

function body() {
  if (mode() === "template") return templateBody();
  if (mode() === "json") {
    try { return JSON.parse($("spec").value); } catch (e) {
      throw Object.assign(new Error(`not valid JSON: ${e.message}`), { field: "spec" });
    }
  }
  return simpleBody();
}

// Where an error the API names (`outputs.0.preset`, `params.crf`, `input`) is shown in this form.
function fieldFor(name) {
  if (mode() === "json") return "spec";
  if (name.startsWith("params.")) return `param-${name.slice(7)}`;
  if (name === "template") return "template";
  if (name === "input") return "input";
  if (name.startsWith("outputs")) return "presets";
  return null;
}

function clearErrors() {
  for (const node of form.querySelectorAll(".field-error")) { node.hidden = true; node.textContent = ""; }
  for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  $("submit-error").hidden = true;
  $("submit-errors").hidden = true;
}

function fieldError(id, message) {
  const input = $(id);
  const note = $(`${id}-error`);
  if (!input || !note) return false;
  input.setAttribute("aria-invalid", "true");
  note.textContent = note.textContent ? `${note.textContent}; ${message}` : message;
  note.hidden = false;
  return true;
}

form.addEventListener("change", (event) => {
  if (event.target.name === "mode") switchMode();
  if (event.target.id === "template") showParams();
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors();
  let payload;
  try { payload = body(); } catch (e) { fieldError(e.field, e.message); return; }
  try {
    const job = await api("/v1/jobs", { method: "POST", body: payload });
    location.assign(`/console/jobs/${encodeURIComponent(job.id)}`);
  } catch (e) {
    showError($("submit-error"), e);
    const unplaced = [];
    for (const err of e.problem?.errors || []) {
      const id = fieldFor(err.field || "");
      const text = mode() === "json" ? `${err.field}: ${err.message}` : err.message;
      if (!id || !fieldError(id, text)) unplaced.push(`${err.field}: ${err.message}`);
    }
    if (unplaced.length) {
      $("submit-errors").replaceChildren(...unplaced.map((m) => el("li", {}, m)));
      $("submit-errors").hidden = false;
    }
    form.querySelector("[aria-invalid]")?.focus();
  }
});

// A chosen file is uploaded at once; when its last byte is in, the input names it (upload://<id>).
let uploading = false;
$("file")?.addEventListener("change", async () => {
  const file = $("file").files[0];
  if (!file || uploading) return;
  uploading = true;
  const bar = $("upload-progress");
  const status = $("upload-status");
  const submit = form.querySelector("button[type=submit]");
  bar.hidden = false;
  submit.disabled = true;
  status.textContent = `Uploading ${file.name}…`;
  try {
    const uri = await upload(file, (sent, total) => {
      const percent = total ? (100 * sent) / total : 100;
      bar.setAttribute("aria-valuenow", percent.toFixed(0));
      $("upload-fill").style.transform = `scaleX(${percent / 100})`;
      status.textContent = `Uploading ${file.name}: ${bytes(sent)} of ${bytes(total)}`;
    });
    $("input").value = uri;
    status.textContent = `Uploaded ${file.name}: the input is ${uri}.`;
    announce("Upload finished");
  } catch (e) {
    status.textContent = `The upload stopped: ${e.message}. Choose the file again to continue where it stopped.`;
    $("file").value = "";
  } finally {
    uploading = false;
    submit.disabled = false;
  }
});

async function init() {
  try {
    const presets = itemsOf(await api("/v1/presets")) || [];
    $("presets").replaceChildren(...presets.map((p) => el("option", { value: p.name }, p.name)));
    templates = itemsOf(await api("/v1/templates")) || [];
    $("template").replaceChildren(...templates.map((t) => el("option", { value: t.name }, t.name)));
    showParams();
  } catch (e) { showError($("submit-error"), e); }
}
init();
