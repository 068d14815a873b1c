// The job page: the job and its history from the API, live progress from its event stream (SSE),
// outputs with their scores, per-frame quality charts, the in-page player, cancel and retry.
import { announce, api, bytes, el, showError, when } from "./api.js";
import { qualityChart } from "./chart.js";
import { showPictures } from "./pictures.js";

const main = document.getElementById("main");
const jobId = main.dataset.jobId;
const tenant = main.dataset.tenant;
const suffix = tenant ? `?tenant=${encodeURIComponent(tenant)}` : "";
const base = `/v1/jobs/${encodeURIComponent(jobId)}`;
const $ = (id) => document.getElementById(id);
const ENDED = new Set(["succeeded", "failed", "canceled"]);
let job = null;
let stream = null;
let chartsShown = false;
let playerShown = false;
let picturesShown = false;

function setProgress(percent) {
  const value = Math.max(0, Math.min(100, percent || 0));
  $("progress").setAttribute("aria-valuenow", value.toFixed(0));
  // A transform, not a width: the bar never changes the layout around it.
  $("progress-fill").style.transform = `scaleX(${value / 100})`;
  $("percent").textContent = `${value.toFixed(1)} %`;
}

function seconds(s) {
  if (s === null || s === undefined) return "–";
  const m = Math.floor(s / 60);
  return m ? `${m} min ${Math.round(s % 60)} s` : `${Math.round(s)} s`;
}

function showState(state) {
  const badge = $("state");
  badge.textContent = state;
  badge.className = `badge ${state}`;
  const cancel = $("cancel");
  if (cancel) cancel.hidden = ENDED.has(state) || Boolean(job?.cancel_requested);
  const retry = $("retry");
  if (retry) retry.hidden = !(state === "failed" || state === "canceled");
}

// `psnr` is the luma plane's alone (`psnr_yuv` weighs Y, Cb and Cr 6:1:1): the label says so.
const METRIC_LABELS = { vmaf: "VMAF", psnr: "PSNR-Y", ssim: "SSIM" };
const metricLabel = (key) => METRIC_LABELS[key] ?? key.toUpperCase();

function scores(metrics) {
  if (!metrics) return "–";
  const parts = [];
  for (const [key, label] of Object.entries(METRIC_LABELS)) {
    const m = metrics[key];
    if (m && typeof m === "object" && m.mean !== undefined) parts.push(`${label} ${Number(m.mean).toFixed(key === "ssim" ? 3 : 1)}`);
  }
  return parts.length ? parts.join(" · ") : "–";
}

function showOutputs(outputs) {
  if (!outputs?.length) return;
  $("outputs").replaceChildren(...outputs.map((o) => el("tr", {},
    el("td", {}, o.name),
    el("td", {}, [o.container, o.video_codec, o.audio_codec].filter(Boolean).join(" · ")),
    el("td", {}, bytes(o.size_bytes)),
    el("td", {}, o.bitrate_kbps ? `${Math.round(o.bitrate_kbps)} kb/s` : "–"),
    el("td", {}, o.width ? `${o.width}×${o.height}` : "–"),
    el("td", { "data-testid": "scores" }, scores(o.metrics)))));
}

async function showCharts(outputs) {
  const scored = (outputs || []).filter((o) => o.metrics_log_uri);
  if (chartsShown || !scored.length) return;
  chartsShown = true;
  $("quality-section").hidden = false;
  for (const output of scored) {
    try {
      const q = await api(`${base}/quality/${encodeURIComponent(output.name)}${suffix}`);
      const points = q.series[q.metric] || [];
      const worst = q.summary?.worst_segment;
      const caption = worst
        ? `Worst ${metricLabel(worst.metric)} segment: ${worst.start}–${worst.end} s, mean ${Number(worst.mean).toFixed(1)}`
        : "";
      $("charts").append(el("figure", { class: "quality" },
        qualityChart({ metric: q.metric, points, worst, title: `${metricLabel(q.metric)} per frame of ${output.name}` }),
        el("figcaption", {}, `${output.name}: ${metricLabel(q.metric)} per frame. ${caption}`)));
    } catch (e) {
      $("charts").append(el("p", { class: "error" }, `${output.name}: ${e.message}`));
    }
  }
}

function showPlayer(outputs) {
  if (playerShown || !outputs?.length) return;
  const holder = $("player");
  if (main.dataset.downloads !== "true") {
    $("player-note").textContent = "This installation has no output downloads yet, so the console cannot play outputs.";
    return;
  }
  playerShown = true;
  const playable = outputs.filter((o) => ["mp4", "webm", "mov", "hls", "dash", "cmaf"].includes(o.container) || /\.(m3u8|mpd)$/.test(o.uri || ""));
  if (!playable.length) { $("player-note").textContent = "No output can be played in a browser."; return; }
  const pick = el("select", { id: "play-pick", "aria-label": "Output to play" }, playable.map((o) => el("option", { value: o.name }, o.name)));
  const video = el("video", { id: "video", controls: true, muted: true, playsinline: true, preload: "metadata" });
  const note = el("p", { class: "hint", id: "player-note" });
  const load = () => play(playable.find((o) => o.name === pick.value), video, note);
  pick.addEventListener("change", load);
  holder.replaceChildren(el("label", { for: "play-pick" }, "Output"), pick, video, note);
  load();
}

let attached = null;
function play(output, video, note) {
  attached?.destroy?.();
  attached = null;
  const src = `${base}/outputs/${encodeURIComponent(output.name)}${suffix}`;
  const uri = output.uri || "";
  note.textContent = "";
  if (uri.endsWith(".m3u8") && !video.canPlayType("application/vnd.apple.mpegurl")) {
    if (!window.Hls) { note.textContent = "The HLS player library is not installed on this server (make installs it)."; return; }
    attached = new window.Hls();
    attached.loadSource(src);
    attached.attachMedia(video);
  } else if (uri.endsWith(".mpd")) {
    if (!window.dashjs) { note.textContent = "The DASH player library is not installed on this server (make installs it)."; return; }
    const player = window.dashjs.MediaPlayer().create();
    player.initialize(video, src, false);
    attached = { destroy: () => player.reset() };
  } else {
    video.src = src;
  }
}

function showHistory(items) {
  $("history").replaceChildren(...items.map((t) => el("li", {},
    el("time", { datetime: t.at }, when(t.at)), " ",
    el("strong", {}, `${t.from_state ?? "–"} → ${t.to_state}`),
    t.reason ? ` · ${t.reason}` : "",
    t.worker ? ` · ${t.worker}` : "",
    t.actor ? ` · by ${t.actor}` : "")));
}

async function refresh() {
  try {
    job = await api(`${base}${suffix}`);
  } catch (e) {
    if (e.status === 404) {
      $("job-body").hidden = true;
      $("state").textContent = "not found";
      showError($("job-error"), `Job not found: no job ${jobId} is visible to you.`);
      stream?.close();
      return;
    }
    showError($("job-error"), e);
    return;
  }
  showState(job.state);
  if (ENDED.has(job.state)) setProgress(job.state === "succeeded" ? 100 : job.progress);
  else if (!stream || job.progress > Number($("progress").getAttribute("aria-valuenow"))) setProgress(job.progress);
  showOutputs(job.outputs);
  if (job.state === "succeeded") {
    showCharts(job.outputs);
    showPlayer(job.outputs);
    if (!picturesShown && main.dataset.downloads === "true") {
      picturesShown = true;
      showPictures(job.outputs, $("pictures"), base, suffix).then((any) => { $("pictures-section").hidden = !any; });
    }
  }
  if (job.error) showError($("job-error"), `${job.failure_class ?? "error"}: ${job.error}`);
  try {
    showHistory((await api(`${base}/history${suffix}`)).items);
  } catch (e) { /* the job itself was shown; its history follows on the next event */ }
  if (!ENDED.has(job.state) && !stream) follow();
}

function follow() {
  stream = new EventSource(`${base}/events${suffix}`);
  stream.addEventListener("progress", (event) => {
    const p = JSON.parse(event.data);
    setProgress(p.percent);
    $("phase").textContent = p.phase || "–";
    $("fps").textContent = p.fps ? `${Number(p.fps).toFixed(0)} fps${p.speed ? ` (${Number(p.speed).toFixed(1)}×)` : ""}` : "–";
    $("eta").textContent = seconds(p.eta_seconds);
  });
  stream.addEventListener("state", (event) => {
    const s = JSON.parse(event.data);
    showState(s.state);
    announce(`Job ${s.state}`);
    refresh();
  });
  stream.addEventListener("done", () => {
    stream.close();
    $("eta").textContent = "–";
    refresh();
  });
}

$("cancel")?.addEventListener("click", async () => {
  if (!confirm("Cancel this job?")) return;
  try {
    job = await api(`${base}/cancel`, { method: "POST" });
    announce(job.state === "canceled" ? "Job canceled" : "Cancel requested");
    $("cancel").hidden = true;
    refresh();
  } catch (e) { showError($("job-error"), e); }
});

$("retry")?.addEventListener("click", async () => {
  try {
    const again = await api("/v1/jobs", { method: "POST", body: job.spec });
    location.assign(`/console/jobs/${encodeURIComponent(again.id)}`);
  } catch (e) { showError($("job-error"), e); }
});

refresh();
