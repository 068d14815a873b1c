// Thumbnails and the sprite scrubber of the job page. A sprite set's WebVTT map gives each time range its
// tile (`sheet.jpg#xywh=x,y,w,h`); moving the scrubber (pointer or keyboard) shows the tile for that time.
import { el } from "./api.js";

function seconds(stamp) {
  const parts = stamp.trim().split(":").map(Number);
  return parts.reduce((total, part) => total * 60 + part, 0);
}

// The cues of a sprite map: [{start, end, sheet, x, y, w, h}], in order.
export function parseSpriteVtt(text) {
  const cues = [];
  const lines = text.replace(/\r/g, "").split("\n");
  for (let i = 0; i < lines.length - 1; i += 1) {
    const times = lines[i].match(/^\s*([\d:.]+)\s+-->\s+([\d:.]+)/);
    const target = lines[i + 1].match(/^(.+)#xywh=(\d+),(\d+),(\d+),(\d+)\s*$/);
    if (!times || !target) continue;
    const [x, y, w, h] = target.slice(2).map(Number);
    cues.push({ start: seconds(times[1]), end: seconds(times[2]), sheet: target[1], x, y, w, h });
  }
  return cues;
}

export function cueAt(cues, time) {
  return cues.find((c) => time >= c.start && time < c.end) ?? (time >= (cues.at(-1)?.end ?? 0) ? cues.at(-1) : cues[0]);
}

function fileUrl(base, suffix, name, file) {
  return `${base}/outputs/${encodeURIComponent(name)}/${encodeURIComponent(file)}${suffix}`;
}

function thumbnailSet(output, base, suffix) {
  const files = output.details?.files || [];
  return el("figure", { class: "thumbs" },
    el("ul", { class: "thumb-list" }, files.map((f) => {
      const file = f.uri.split("/").pop();
      return el("li", {},
        el("img", { src: fileUrl(base, suffix, output.name, file), alt: `${output.name} at ${f.time} s`, loading: "lazy", "data-testid": "thumbnail" }),
        el("span", { class: "hint" }, `${f.time} s`));
    })),
    el("figcaption", {}, `${output.name}: ${files.length} pictures`));
}

async function spriteScrubber(output, base, suffix) {
  const vtt = (output.details?.vtt || "").split("/").pop();
  const response = await fetch(fileUrl(base, suffix, output.name, vtt), { credentials: "same-origin" });
  if (!response.ok) throw new Error(`the sprite map of ${output.name} cannot be read (HTTP ${response.status})`);
  const cues = parseSpriteVtt(await response.text());
  if (!cues.length) throw new Error(`the sprite map of ${output.name} has no tiles`);
  const id = `scrub-${output.name}`;
  const end = cues.at(-1).end;
  const tile = el("div", { class: "sprite-tile", "data-testid": "sprite-tile", role: "img" });
  const time = el("output", { for: id, class: "hint" });
  const range = el("input", { id, type: "range", min: 0, max: end, step: "any", value: 0, "aria-valuetext": "0 s" });
  const show = (t) => {
    const cue = cueAt(cues, t);
    tile.style.width = `${cue.w}px`;
    tile.style.height = `${cue.h}px`;
    tile.style.backgroundImage = `url("${fileUrl(base, suffix, output.name, cue.sheet)}")`;
    tile.style.backgroundPosition = `-${cue.x}px -${cue.y}px`;
    Object.assign(tile.dataset, { sheet: cue.sheet, x: cue.x, y: cue.y, start: cue.start });
    tile.setAttribute("aria-label", `${output.name} at ${t.toFixed(1)} s`);
    time.textContent = `${t.toFixed(1)} s`;
    range.setAttribute("aria-valuetext", `${t.toFixed(1)} s`);
  };
  // Keyboard steps go tile by tile; the pointer hovering over the track previews the time under it.
  range.step = String(cues[0].end - cues[0].start || "any");
  range.addEventListener("input", () => show(Number(range.value)));
  range.addEventListener("pointermove", (event) => {
    const box = range.getBoundingClientRect();
    const t = Math.max(0, Math.min(end, ((event.clientX - box.left) / box.width) * end));
    show(t);
  });
  range.addEventListener("pointerleave", () => show(Number(range.value)));
  show(0);
  return el("div", { class: "scrubber" },
    el("label", { for: id }, `Scrub ${output.name} (${cues.length} tiles)`), range, time, tile);
}

// Draws the job's thumbnail sets and sprite scrubbers into `holder`; false when it has none.
export async function showPictures(outputs, holder, base, suffix) {
  const sets = (outputs || []).filter((o) => o.kind === "thumbnails" || o.kind === "sprites");
  if (!sets.length) return false;
  for (const output of sets) {
    try {
      holder.append(output.kind === "thumbnails" ? thumbnailSet(output, base, suffix) : await spriteScrubber(output, base, suffix));
    } catch (e) {
      holder.append(el("p", { class: "error" }, e.message));
    }
  }
  return true;
}
