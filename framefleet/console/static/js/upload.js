// Resumable uploads through the API's tus 1.0.0 endpoint (/v1/uploads, docs/storage.md): one POST makes
// the upload, then PATCHes of CHUNK bytes each carry the session's CSRF token. Where an upload stands is
// the server's answer to HEAD, so a broken upload resumes from the bytes that arrived; the upload's URL
// is remembered per file (name, size, modification time) in this browser's localStorage.
const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
const TUS = { "Tus-Resumable": "1.0.0" };
export const CHUNK = 1024 * 1024;

export class UploadError extends Error {}

function key(file) { return `framefleet-upload:${file.name}:${file.size}:${file.lastModified}`; }

async function problem(response) {
  try { return (await response.json()).detail || `HTTP ${response.status}`; } catch { return `HTTP ${response.status}`; }
}

// tus metadata: comma-separated "key base64(value)" pairs; the value's UTF-8 bytes are encoded.
function metadata(file) {
  const utf8 = new TextEncoder().encode(file.name);
  return `filename ${btoa(String.fromCharCode(...utf8))}`;
}

async function create(file) {
  const response = await fetch("/v1/uploads", {
    method: "POST",
    credentials: "same-origin",
    headers: { ...TUS, "X-CSRF-Token": csrf, "Upload-Length": String(file.size), "Upload-Metadata": metadata(file) },
  });
  if (response.status !== 201) throw new UploadError(await problem(response));
  return new URL(response.headers.get("Location"), location.origin).pathname;
}

// The offset the server holds for a remembered upload, or null when it is gone (expired, deleted).
async function offsetOf(url) {
  const response = await fetch(url, { method: "HEAD", credentials: "same-origin", headers: TUS });
  return response.ok ? Number(response.headers.get("Upload-Offset")) : null;
}

// Sends `file` (resuming a remembered upload) and answers its `upload://<id>`; onProgress(sent, total).
export async function upload(file, onProgress) {
  let url = localStorage.getItem(key(file));
  let offset = url ? await offsetOf(url) : null;
  if (offset === null) {
    url = await create(file);
    localStorage.setItem(key(file), url);
    offset = 0;
  }
  onProgress(offset, file.size);
  while (offset < file.size) {
    const response = await fetch(url, {
      method: "PATCH",
      credentials: "same-origin",
      headers: { ...TUS, "X-CSRF-Token": csrf, "Upload-Offset": String(offset), "Content-Type": "application/offset+octet-stream" },
      body: file.slice(offset, offset + CHUNK),
    });
    if (response.status === 409) {
      // Another offset than ours (a chunk that arrived though its answer was lost): ask where it stands.
      const held = await offsetOf(url);
      if (held === null || held === offset) throw new UploadError(await problem(response));
      offset = held;
      continue;
    }
    if (response.status !== 204) throw new UploadError(await problem(response));
    offset = Number(response.headers.get("Upload-Offset"));
    onProgress(offset, file.size);
  }
  const state = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  const done = state.ok ? await state.json() : null;
  localStorage.removeItem(key(file));
  if (!done?.uri) throw new UploadError("the upload is gone from the server; choose the file again to start over");
  return done.uri;
}
