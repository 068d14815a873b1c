// The one scenario every player page runs, through its adapter (window.startPlayer, set by the page):
// play past a few seconds, force the lowest rendition, then the highest, play on a second more, and report
// what happened.
const PLAYED_SECONDS = 3;
const PLAY_ON_SECONDS = 1;
const STEP_TIMEOUT_MS = 15000;

function waitFor(condition, what, timeoutMs = STEP_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const poll = () => {
      if (condition()) resolve();
      else if (performance.now() - started > timeoutMs) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(poll, 25);
    };
    poll();
  });
}

window.scenario = async () => {
  const video = document.querySelector("video");
  const src = new URLSearchParams(location.search).get("src");
  const fatal = [];
  const sizes = [];
  const steps = [];
  video.addEventListener("error", () => fatal.push(`video element: ${video.error && video.error.message}`));
  video.addEventListener("resize", () => sizes.push([video.videoWidth, video.videoHeight, video.currentTime]));
  const step = (name) => steps.push({ name, time: video.currentTime, width: video.videoWidth, height: video.videoHeight });
  let heights = [];
  try {
    const player = await window.startPlayer(video, src, (message) => fatal.push(message));
    video.muted = true;
    await video.play();
    await waitFor(() => video.currentTime >= PLAYED_SECONDS || fatal.length, `currentTime ${PLAYED_SECONDS} s`);
    step("played");
    heights = player.heights().sort((a, b) => a - b);
    for (const height of [heights[0], heights[heights.length - 1]]) {
      player.force(height);
      await waitFor(() => video.videoHeight === height || fatal.length, `a ${height}-line picture`);
      step(`forced ${height}`);
    }
    const switched = video.currentTime;
    await waitFor(() => video.currentTime >= switched + PLAY_ON_SECONDS || fatal.length, "playback after the switches");
    step("played on");
  } catch (error) {
    steps.push({ name: `stopped: ${error.message}` });
  }
  return { fatal, sizes, steps, heights, time: video.currentTime, ended: video.ended };
};
