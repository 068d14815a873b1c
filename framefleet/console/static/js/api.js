// Calls to the /v1 API with the session cookie; state-changing calls echo the session's CSRF token.
const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  if (response.status === 401) {
    // The session ended (expired, or the key was revoked): back to the sign-in page, then here again.
    location.assign(`/console/sign-in?next=${encodeURIComponent(location.pathname + location.search)}`);
    throw new ApiError(401, { detail: "signed out" });
  }
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// Small DOM helper: el("td", {class: "x"}, "text", child...). Text is always set as text, never as HTML.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function showError(node, error) {
  node.textContent = error instanceof ApiError ? error.message : String(error);
  node.hidden = false;
}

export function announce(text) {
  const region = document.getElementById("announce");
  if (region) region.textContent = text;
}

export function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function when(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return Number.isNaN(date.valueOf()) ? iso : date.toLocaleString();
}

// A table from a list of objects; columns default to the first scalar fields of the first row.
export function table(items, columns, cells = {}) {
  if (!items.length) return el("p", { class: "hint" }, "Nothing here yet.");
  const cols = columns || Object.keys(items[0]).filter((k) => typeof items[0][k] !== "object" || items[0][k] === null).slice(0, 7);
  return el("table", {},
    el("thead", {}, el("tr", {}, cols.map((c) => el("th", { scope: "col" }, c.replaceAll("_", " "))))),
    el("tbody", {}, items.map((item) => el("tr", {}, cols.map((c) => el("td", {}, cells[c] ? cells[c](item) : format(item[c])))))));
}

export function format(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

export function itemsOf(data) {
  if (Array.isArray(data)) return data;
  for (const key of ["items", "workers", "queues", "pools", "entries", "keys"]) {
    if (Array.isArray(data?.[key])) return data[key];
  }
  return null;
}
