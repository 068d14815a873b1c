"""Target-quality search, the process edge: cut the samples, encode and score them, settle each output's
quality value, and say afterwards how the prediction compared with the real encode.

The choices are media/target.py's (pure). Each probe is the output itself, planned by the same planner as
the real encode (same operations, scaling, encoder, preset and cap) over the sample reel instead of the
input, and scored in the same process by the same quality chains, so its score is the one the real output
would get on those frames.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import av

from framefleet.core.failures import FailureClass, JobFailure
from framefleet.core.ladders import PEAK_FACTOR, AutoLadderSpec, GroupSpec, RenditionSpec
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
from framefleet.media.autoladder import Chosen, Point, plan_ladder, sample_crfs
from framefleet.media.capabilities import Capabilities
from framefleet.media.command import JobPlan, expected_duration, plan_job
from framefleet.media.encoders import DEFAULT_CRF, Family, HardwareSetup, quality_knob
from framefleet.media.filters import Assets, pre_video
from framefleet.media.ladder import resolve_ladder
from framefleet.media.probe import MediaInfo, VideoInfo, probe
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


def reel_operations(spec: JobSpec) -> OperationsSpec:
    """The job's operations as a probe over the reel runs them: the reel is the input's picture already
    cut (and turned upright where the spec keeps rotation), without sound."""
    return (spec.operations or OperationsSpec()).model_copy(
        update={
            "trim": None,
            "loudness": None,
            "channel_mix": None,
            "audio_track": None,
            "strip_audio": True,
            "auto_rotate": True,
        }
    )


def probe_spec(spec: JobSpec, output: OutputSpec, value: float, reel: Path) -> JobSpec:
    """The job one probe runs: this output alone, without sound, at `value`, over the reel, scored."""
    target = output.quality_target
    assert target is not None
    ops = reel_operations(spec)
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


@dataclass(frozen=True)
class Reel:
    """The samples every probe encodes: the lossless reel, its probe, and where its windows came from."""

    path: Path
    info: MediaInfo
    windows: list[tuple[float, float]]
    duration: float  # the input's (after trim): what the samples stand for

    @property
    def seconds(self) -> float:
        """Media seconds the reel holds."""
        return sum(seconds for _, seconds in self.windows)


def needs_search(spec: JobSpec) -> bool:
    """Whether the job has a quality target or a per-title ladder to search before it encodes."""
    return any(o.quality_target is not None for o in spec.outputs) or any(
        g.auto_ladder is not None for g in spec.groups
    )


def cut_reel(
    spec: JobSpec, info: MediaInfo, source: Path, workdir: Path, *, threads: int, run_step: RunStep
) -> Reel:
    """Cut the sample windows of the input (after trim) into one lossless reel."""
    duration = expected_duration(spec, info)
    if not duration or info.video is None:
        raise JobFailure(
            FailureClass.input_invalid,
            "a quality target or an auto ladder needs a video input of known duration",
        )
    ops = spec.operations
    offset = ops.trim.start if ops is not None and ops.trim is not None else 0.0
    windows = sample_windows(duration)
    workdir.mkdir(parents=True, exist_ok=True)
    video = info.video
    seconds = sum(n for _, n in windows)
    reel = workdir / reel_name(
        width=video.width, height=video.height, bit_depth=video.bit_depth, fps=video.fps, seconds=seconds
    )
    keep_rotation = ops is None or ops.auto_rotate
    cut = [(offset + start, n) for start, n in windows]
    run_step(reel_args(source, cut, reel, threads=threads, keep_rotation=keep_rotation), None, 0.0)
    return Reel(reel, _as_cut_from(probe(reel), video), windows, duration)


def _as_cut_from(reel: MediaInfo, source: VideoInfo) -> MediaInfo:
    """The reel's probe, with the input's field structure: the lossless reel states no field order, so its
    own probe would judge it afresh (idet can take a progressive test pattern for fields), and the probes
    would then deinterlace what the real encode does not."""
    if reel.video is None:
        return reel
    fields = replace(reel.video, interlaced=source.interlaced, field_parity=source.field_parity)
    return replace(reel, video=fields)


def plan_probe(
    job: JobSpec,
    reel: Reel,
    caps: Capabilities,
    folder: Path,
    *,
    threads: int,
    hardware: HardwareSetup | None,
    assets: Assets,
) -> JobPlan:
    """The process of one probe job over the reel. Its streams are scored as the job's outputs will be (a
    scaled one at display size), without the own-size score: only the display-size one steers the search."""
    return plan_job(
        job,
        reel.info,
        caps,
        reel.path,
        folder,
        threads=threads,
        hardware=hardware,
        assets=assets,
        native_scores=False,
    )


def _run_probe(
    job: JobSpec,
    reel: Reel,
    caps: Capabilities,
    folder: Path,
    *,
    threads: int,
    hardware: HardwareSetup | None,
    assets: Assets,
    run_step: RunStep,
    done: float,
) -> list[tuple[float, int]]:
    """Encode and score one probe job over the reel: (VMAF mean, video bytes) per output, in order."""
    plan = plan_probe(job, reel, caps, folder, threads=threads, hardware=hardware, assets=assets)
    plan.prepare()
    run_step(plan.argv, plan.duration, done)
    rows = {row.name: row for row in collect_results(plan, job, "file:///probe/").rows}
    found: list[tuple[float, int]] = []
    for output in plan.outputs:
        name = output.output.name or ""
        score = (rows[name].metrics or {}).get("vmaf", {}).get("mean")
        if score is None:
            raise JobFailure(
                FailureClass.spec_unsupported, f"{name!r} cannot be scored with VMAF for its search"
            )
        found.append((float(score), video_bytes(output.path)))
    return found


def search_outputs(
    spec: JobSpec,
    reel: Reel,
    caps: Capabilities,
    workdir: Path,
    *,
    threads: int,
    hardware: HardwareSetup | None,
    assets: Assets,
    run_step: RunStep,
) -> dict[str, Search]:
    """Search every output that has a quality target; returns the searches by output name."""
    wanted = [o for o in spec.outputs if o.quality_target is not None]
    family = hardware.family if hardware is not None else Family.cpu
    searches: dict[str, Search] = {}
    planned = len(wanted) * MAX_PROBES
    done = 0
    for output in wanted:
        target = output.quality_target
        assert target is not None
        knob, bounds = bounds_for(target, family, output)
        search = Search(output.name or "", target, knob, bounds, reel.duration, reel.windows)
        started = time.monotonic()
        while (value := next_value(search.probes, bounds)) is not None:
            job = probe_spec(spec, output, value, reel.path)
            ((score, size),) = _run_probe(
                job,
                reel,
                caps,
                workdir / f"{search.output}-{value}",
                threads=threads,
                hardware=hardware,
                assets=assets,
                run_step=run_step,
                done=done / planned,
            )
            done += 1
            search.probes.append(Probe(value, score, size, reel.seconds))
            log.info("quality probe", output=search.output, value=value, score=round(score, 3))
        search.choice = choose(search.probes, bounds)
        search.seconds = time.monotonic() - started
        log.info(
            "quality target chosen", output=search.output, value=search.choice.value, met=search.choice.met
        )
        searches[search.output] = search
    return searches


@dataclass
class LadderSearch:
    """One group's per-title ladder: the candidates' sample points and the rungs chosen from them."""

    group: str
    auto: AutoLadderSpec
    points: list[Point] = field(default_factory=list)
    chosen: list[Chosen] = field(default_factory=list)
    seconds: float = 0.0

    def view(self) -> dict[str, Any]:
        """What the group's manifest rows record (details.auto_ladder)."""
        return {
            **self.auto.model_dump(mode="json"),
            "points": [p.view() for p in self.points],
            "rungs": [c.view() for c in self.chosen],
            "search_seconds": round(self.seconds, 3),
        }


def ladder_probe_spec(
    spec: JobSpec, group: GroupSpec, rung: RenditionSpec, size: tuple[int, int], reel: Path, crfs: list[float]
) -> JobSpec:
    """The job sampling one candidate size: one silent output per crf over the reel, scored (at display
    size, as the group's rungs are) with VMAF, all from one decode."""
    codec = rung.codec or group.video_codec
    outputs = [
        OutputSpec.model_validate(
            {
                "name": f"c{index}",
                "container": "mp4",
                "video": {
                    "codec": codec.value,
                    "width": size[0],
                    "height": size[1],
                    "crf": crf,
                    **({"preset": rung.preset.value} if rung.preset is not None else {}),
                    **({"profile": rung.profile.value} if rung.profile is not None else {}),
                    **({"pix_fmt": rung.pix_fmt.value} if rung.pix_fmt is not None else {}),
                },
                "audio": {"codec": "none"},
                "subtitles": "drop",
            }
        )
        for index, crf in enumerate(crfs)
    ]
    ops = reel_operations(spec)
    asked = spec.quality or QualitySpec()
    quality = QualitySpec(
        metrics=[Metric.vmaf], subsample=PROBE_SUBSAMPLE, vmaf_model=asked.vmaf_model, display=asked.display
    )
    return spec.model_copy(
        update={
            "input": reel.as_uri(),
            "outputs": outputs,
            "groups": [],
            "thumbnails": [],
            "sprites": [],
            "poster": None,
            "operations": ops,
            "quality": quality,
        }
    )


def search_ladders(
    spec: JobSpec,
    reel: Reel,
    caps: Capabilities,
    workdir: Path,
    *,
    threads: int,
    hardware: HardwareSetup | None,
    assets: Assets,
    run_step: RunStep,
) -> dict[str, LadderSearch]:
    """Measure every auto ladder's candidate sizes on the reel and choose its rungs, by group name."""
    family = hardware.family if hardware is not None else Family.cpu
    wanted = [g for g in spec.groups if g.auto_ladder is not None]
    assert reel.info.video is not None
    # The picture the group sees: the reel after the job's operations (crop, rotate, ...).
    video = pre_video(reel_operations(spec), reel.info.video, "0:V:0", assets, input_index=1).video
    assert video is not None
    searches: dict[str, LadderSearch] = {}
    for group in wanted:
        assert group.auto_ladder is not None
        search = LadderSearch(group.name or "", group.auto_ladder)
        started = time.monotonic()
        # The candidates as the group would size them on this input (the reel is the input's picture).
        resolved = resolve_ladder(group, video).rungs
        knob = quality_knob(family, group.video_codec)
        crfs = sample_crfs(knob.high)
        for index, candidate in enumerate(resolved):
            rung = candidate.spec
            job = ladder_probe_spec(spec, group, rung, (candidate.width, candidate.height), reel.path, crfs)
            measured = _run_probe(
                job,
                reel,
                caps,
                workdir / f"{search.group}-{rung.name}",
                threads=threads,
                hardware=hardware,
                assets=assets,
                run_step=run_step,
                done=index / len(resolved),
            )
            for crf, (score, size) in zip(crfs, measured, strict=True):
                kbps = size * 8 / reel.seconds / 1000
                point = Point(rung.name or "", candidate.width, candidate.height, crf, kbps, score)
                search.points.append(point)
            log.info("ladder candidate sampled", group=search.group, rung=rung.name)
        order = [c.spec.name or "" for c in resolved]
        search.chosen = plan_ladder(search.points, group.auto_ladder, order=order, step=knob.step)
        search.seconds = time.monotonic() - started
        log.info("auto ladder chosen", group=search.group, rungs=[c.name for c in search.chosen])
        searches[search.group] = search
    return searches


def laddered_spec(spec: JobSpec, searches: dict[str, LadderSearch]) -> JobSpec:
    """The job with each auto ladder's chosen rungs in place of its candidates: each a candidate size at
    its crf, capped at PEAK_FACTOR times its predicted bitrate or max_bitrate_kbps, whichever is lower
    (buffer twice the cap)."""
    groups = []
    for group in spec.groups:
        search = searches.get(group.name or "")
        if search is None:
            groups.append(group)
            continue
        by_name = {rung.name: rung for rung in group.ladder}
        rungs = []
        limit = search.auto.max_bitrate_kbps or math.inf
        for chosen in search.chosen:
            cap = max(50, round(min(chosen.kbps * PEAK_FACTOR, limit)))
            rungs.append(
                by_name[chosen.rung].model_copy(
                    update={
                        "name": chosen.name,
                        "crf": chosen.crf,
                        "bitrate_kbps": None,
                        "maxrate_kbps": cap,
                        "bufsize_kbps": 2 * cap,
                    }
                )
            )
        groups.append(group.model_copy(update={"ladder": rungs}))
    return spec.model_copy(update={"groups": groups})


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
