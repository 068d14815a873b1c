// A per-frame quality chart as inline SVG (no library): the score over time, the worst segment shaded.
const NS = "http://www.w3.org/2000/svg";
const W = 640;
const H = 200;
const PAD = { left: 40, right: 8, top: 8, bottom: 24 };

function node(tag, attrs, text) {
  const n = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  if (text !== undefined) n.textContent = text;
  return n;
}

export function qualityChart({ metric, points, worst, title }) {
  const times = points.map((p) => p[0]);
  const values = points.map((p) => p[1]);
  const t1 = Math.max(...times, 0.001);
  const top = metric.startsWith("vmaf") ? 100 : Math.ceil(Math.max(...values));
  const bottom = metric.startsWith("vmaf") ? Math.max(0, Math.floor(Math.min(...values) / 10) * 10 - 10) : Math.floor(Math.min(...values));
  const x = (t) => PAD.left + (t / t1) * (W - PAD.left - PAD.right);
  const y = (v) => PAD.top + (1 - (v - bottom) / Math.max(top - bottom, 1e-9)) * (H - PAD.top - PAD.bottom);
  const svg = node("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart", "aria-labelledby": "" });
  const label = node("title", { id: `chart-${metric}-${Math.random().toString(36).slice(2)}` }, title);
  svg.setAttribute("aria-labelledby", label.id);
  svg.append(label);
  if (worst) {
    svg.append(node("rect", {
      class: "worst", "data-testid": "worst-segment",
      x: x(worst.start), y: PAD.top, width: Math.max(2, x(Math.min(worst.end, t1)) - x(worst.start)), height: H - PAD.top - PAD.bottom,
    }));
  }
  for (const v of [bottom, (bottom + top) / 2, top]) {
    svg.append(node("line", { class: "grid", x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }));
    svg.append(node("text", { class: "axis", x: PAD.left - 4, y: y(v) + 4, "text-anchor": "end" }, Math.round(v)));
  }
  svg.append(node("text", { class: "axis", x: W - PAD.right, y: H - 6, "text-anchor": "end" }, `${t1.toFixed(1)} s`));
  const d = points.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
  svg.append(node("path", { class: "line", d, "data-testid": "quality-line" }));
  return svg;
}
