"""Target-quality search, the process edge: cut the samples, encode and score them, settle each output's
quality value, and say afterwards how the prediction compared with the real encode.

The choices are media/target.py's (pure). Each probe is the output itself, planned by the same planner as
the real encode (same operations, scaling, encoder, preset and cap) over the sample reel instead of the
input, and scored in the same process by the same quality chains, so its score is the one the real output
would get on those frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

from framefleet.core.failures import FailureClass, JobFailure
from framefleet.core.spec import (
    MAX_CRF,
    AudioCodec,
    AudioSpec,
    JobSpec,
    Metric,
    OperationsSpec,
    OutputSpec,
    QualitySpec,
    QualityTargetSpec,
    VideoCodec,
)
from framefleet.logging import get_logger
from framefleet.media.capabilities import Capabilities
from framefleet.media.command import expected_duration, plan_job
from framefleet.media.encoders import DEFAULT_CRF, Family, HardwareSetup, quality_knob
from framefleet.media.filters import Assets
from framefleet.media.probe import MediaInfo, probe
from framefleet.media.results import collect_results
from framefleet.media.target import (
    MAX_PROBES,
    SLOPE,
    Bounds,
    Choice,
    Probe,
    choose,
    first_value,
    next_value,
    predicted_size,
    reel_args,
    reel_name,
    sample_windows,
)

log = get_logger("framefleet.worker")

# Probes score every 3rd frame: on 4 s cuts of the benchmark's sources that is within 0.15 of every frame
# (bench/quality_subsample.py), and it takes two thirds of VMAF's work off each probe.
PROBE_SUBSAMPLE = 3

# (argv without the binary, media seconds for progress, share of the search done when it starts)
RunStep = Callable[[list[str], float | None, float], None]


@dataclass
class Search:
    """One output's search: its inputs, its probes, and what it chose."""

    output: str
    target: QualityTargetSpec
    knob: str
    bounds: Bounds
    duration: float
    windows: list[tuple[float, float]]
    probes: list[Probe] = field(default_factory=list)
    choice: Choice | None = None
    seconds: float = 0.0

    def view(self, *, real_size: int | None = None) -> dict[str, Any]:
        """What is recorded on the output (details.quality_target)."""
        choice = self.choice
        assert choice is not None
        predicted = predicted_size(choice.probe, self.duration) if choice.probe is not None else None
        view: dict[str, Any] = {
            "metric": self.target.metric,
            "target": self.target.value,
            "knob": self.knob,
            "chosen": choice.value,
            "met": choice.met,
            "predicted_score": round(choice.probe.score, 3) if choice.probe is not None else None,
            "range": [self.bounds.low, self.bounds.high],
            "max_bitrate_kbps": self.target.max_bitrate_kbps,
            "samples": [{"start": s, "seconds": n} for s, n in self.windows],
            "probes": [p.view() for p in self.probes],
            "search_seconds": round(self.seconds, 3),
            "predicted_video_bytes": predicted,
        }
        if real_size is not None:
            view["real_video_bytes"] = real_size
            if predicted:
                view["size_error"] = round(real_size / predicted - 1, 4)
        return view


def bounds_for(target: QualityTargetSpec, family: Family, output: OutputSpec) -> tuple[str, Bounds]:
    """The knob's name and the range searched: the spec's min/max within what the encoder takes."""
    codec = output.video.codec
    assert codec is not None
    knob = quality_knob(family, codec)
    low = max(knob.low, target.min_crf if target.min_crf is not None else knob.low)
    high = min(knob.high, target.max_crf if target.max_crf is not None else knob.high)
    if low > high:
        raise JobFailure(
            FailureClass.spec_unsupported,
            f"quality_target range {low}..{high} is outside {knob.option}'s {knob.low}..{knob.high}",
        )
    # The typical slope is x264's on its 0-51 scale; the 0-63 scales (AV1, VP9) spread the same range wider.
    slope = SLOPE * MAX_CRF[VideoCodec.h264] / knob.high
    start = first_value(
        target=target.value, default=DEFAULT_CRF[codec], low=low, high=high, step=knob.step, slope=slope
    )
    return knob.option, Bounds(target.value, low, high, start, knob.step, slope)


def probe_spec(spec: JobSpec, output: OutputSpec, value: float, reel: Path) -> JobSpec:
    """The job one probe runs: this output alone, without sound, at `value`, over the reel, scored."""
    target = output.quality_target
    assert target is not None
    ops = spec.operations or OperationsSpec()
    # The reel is the input's picture already cut (and turned upright where the spec keeps rotation).
    ops = ops.model_copy(
        update={
            "trim": None,
            "loudness": None,
            "channel_mix": None,
            "audio_track": None,
            "strip_audio": True,
            "auto_rotate": True,
        }
    )
    video = output.video.model_copy(update={"crf": value, "maxrate_kbps": target.max_bitrate_kbps})
    sample = output.model_copy(
        update={
            "name": "probe",
            "destination": None,
            "overwrite": False,
            "video": video,
            "audio": AudioSpec(codec=AudioCodec.none),
            "audio_tracks": None,
            "subtitles": "drop",
            "metadata": {},
            "quality_target": None,
        }
    )
    asked = spec.quality or QualitySpec()
    quality = QualitySpec(
        metrics=[Metric.vmaf], subsample=PROBE_SUBSAMPLE, vmaf_model=asked.vmaf_model, display=asked.display
    )
    return spec.model_copy(
        update={
            "input": reel.as_uri(),
            "outputs": [sample],
            "groups": [],
            "thumbnails": [],
            "sprites": [],
            "poster": None,
            "operations": ops,
            "quality": quality,
        }
    )


def targeted_spec(spec: JobSpec, searches: dict[str, Search]) -> JobSpec:
    """The job with each searched output's chosen value written in as its crf (and its cap)."""
    outputs = []
    for output in spec.outputs:
        search = searches.get(output.name or "")
        if search is None or search.choice is None:
            outputs.append(output)
            continue
        video = output.video.model_copy(
            update={"crf": search.choice.value, "maxrate_kbps": search.target.max_bitrate_kbps}
        )
        outputs.append(output.model_copy(update={"video": video}))
    return spec.model_copy(update={"outputs": outputs})


def search_outputs(
    spec: JobSpec,
    info: MediaInfo,
    caps: Capabilities,
    source: Path,
    workdir: Path,
    *,
    threads: int,
    hardware: HardwareSetup | None,
    assets: Assets,
    run_step: RunStep,
) -> dict[str, Search]:
    """Search every output that has a quality target; returns the searches by output name."""
    wanted = [o for o in spec.outputs if o.quality_target is not None]
    if not wanted:
        return {}
    duration = expected_duration(spec, info)
    if not duration or info.video is None:
        raise JobFailure(FailureClass.input_invalid, "a quality target needs a video input of known duration")
    ops = spec.operations
    offset = ops.trim.start if ops is not None and ops.trim is not None else 0.0
    windows = sample_windows(duration)
    workdir.mkdir(parents=True, exist_ok=True)
    reel_seconds = sum(seconds for _, seconds in windows)
    video = info.video
    reel = workdir / reel_name(
        width=video.width, height=video.height, bit_depth=video.bit_depth, fps=video.fps, seconds=reel_seconds
    )
    keep_rotation = ops is None or ops.auto_rotate
    cut = [(offset + start, seconds) for start, seconds in windows]
    run_step(reel_args(source, cut, reel, threads=threads, keep_rotation=keep_rotation), None, 0.0)
    reel_info = probe(reel)
    family = hardware.family if hardware is not None else Family.cpu
    searches: dict[str, Search] = {}
    planned = len(wanted) * MAX_PROBES
    done = 0
    for output in wanted:
        target = output.quality_target
        assert target is not None
        knob, bounds = bounds_for(target, family, output)
        search = Search(output.name or "", target, knob, bounds, duration, windows)
        started = time.monotonic()
        while (value := next_value(search.probes, bounds)) is not None:
            folder = workdir / f"{search.output}-{value}"
            job = probe_spec(spec, output, value, reel)
            plan = plan_job(
                job,
                reel_info,
                caps,
                reel,
                folder,
                threads=threads,
                hardware=hardware,
                assets=assets,
            )
            plan.prepare()
            run_step(plan.argv, plan.duration, done / planned)
            done += 1
            row = collect_results(plan, job, "file:///probe/").rows[0]
            score = (row.metrics or {}).get("vmaf", {}).get("mean")
            if score is None:
                raise JobFailure(
                    FailureClass.spec_unsupported,
                    f"output {search.output!r} cannot be scored with VMAF for its quality target",
                )
            search.probes.append(Probe(value, float(score), video_bytes(plan.outputs[0].path), reel_seconds))
            log.info("quality probe", output=search.output, value=value, score=round(score, 3))
        search.choice = choose(search.probes, bounds)
        search.seconds = time.monotonic() - started
        log.info(
            "quality target chosen", output=search.output, value=search.choice.value, met=search.choice.met
        )
        searches[search.output] = search
    return searches


def video_bytes(path: Path) -> int:
    """Bytes of the first video stream's packets in a media file (the container and sound left out)."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return sum(packet.size for packet in container.demux(stream) if packet.size)
    except (av.FFmpegError, IndexError, OSError) as exc:
        raise JobFailure(
            FailureClass.encoder_failed, f"cannot read the encoded video of {path.name}: {exc}"
        ) from None
