"""The ffmpeg argument list for one job: a pure function of the spec, the probed input and the capabilities.

One ffmpeg process writes everything a job delivers from one decode of the input: plain outputs, every
rung and audio rendition of HLS/DASH/CMAF groups, thumbnails, sprite sheets and the poster. The job's
operations (trim, crop, watermark...) run once, then `split` / `asplit` feed one branch per deliverable.
Outputs that need no filtering map the decoded stream directly; copy outputs map the input stream without
decoding.

Quality is scored inside the same process: each scored branch ends in `split=2`, one copy to its encoder,
the other (the reference: exactly what the encoder was given) to a rawvideo null output. Loopback
decoders (`-dec`, FFmpeg >= 7) decode the encoder's packets and the raw reference, and a second graph
compares them with libvmaf and ffmpeg's ssim filter. The source is decoded once for encoding and scoring.

The pieces live beside this module: planning.py (the builder every part shares), outputs.py (plain
outputs), groups.py (HLS/DASH/CMAF), graph.py (the split fan-out, GPU branches), thumbnails.py, quality.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from framefleet.core.ladders import GroupType
from framefleet.core.spec import Container, JobSpec, PixFmt, VideoCodec
from framefleet.media.capabilities import Capabilities
from framefleet.media.chunks import Chunk, window_args
from framefleet.media.encoders import (
    DEFAULT_CRF,
    DEFAULT_PIX_FMT,
    DEFAULT_PRESET,
    SVTAV1_PRESET,
    VP9_SPEED,
    Family,
    HardwareSetup,
)
from framefleet.media.filters import (
    NTSC_RATES,
    Assets,
    filter_names,
    fps_value,
    num,
    pre_audio,
)
from framefleet.media.graph import Consumer, fan_out, gpu_branch, sw_format, use_gpu_frames, video_graphs
from framefleet.media.groups import (
    GroupPlan,
    RungPlan,
    dash_output,
    hls_outputs,
    plan_group,
)
from framefleet.media.outputs import (
    OutputPlan,
    output_path,
    plain_output_args,
    plan_audio,
    plan_subtitles,
    plan_video,
    target_size,
)
from framefleet.media.planning import (
    GLOBAL_ARGS,
    JobBuilder,
    LoudnessCheck,
    StreamScore,
    display_size,
    require_filters,
    score_for,
    scoreable,
    unsupported,
)
from framefleet.media.probe import MediaInfo
from framefleet.media.quality import metric_chains
from framefleet.media.thumbnails import PicturePlan, plan_poster, plan_sprites, plan_thumbnails

__all__ = [
    "DEFAULT_CRF",
    "DEFAULT_PRESET",
    "NTSC_RATES",
    "SVTAV1_PRESET",
    "VP9_SPEED",
    "GroupPlan",
    "JobPlan",
    "OutputPlan",
    "RungPlan",
    "StreamScore",
    "build_transcode",
    "expected_duration",
    "fps_value",
    "plan_job",
    "target_size",
]


@dataclass
class JobPlan:
    """The ffmpeg arguments and everything the worker needs to find, check and publish what they write."""

    argv: list[str]
    outputs: list[OutputPlan]
    groups: list[GroupPlan]
    pictures: list[PicturePlan]
    scores: list[StreamScore]
    duration: float | None
    notes: dict[str, Any] = field(default_factory=dict)
    loudness: list[LoudnessCheck] = field(default_factory=list)

    def folders(self) -> list[Path]:
        """Folders ffmpeg writes into, to create before it runs."""
        found = [p.path if p.output.container is Container.images else p.path.parent for p in self.outputs]
        found += [g.folder for g in self.groups] + [p.folder for p in self.pictures]
        found += [s.logs.unified.parent for s in self.scores] + [c.meter.parent for c in self.loudness]
        return sorted(set(found))

    def prepare(self) -> None:
        """Create every folder ffmpeg writes into."""
        for folder in self.folders():
            folder.mkdir(parents=True, exist_ok=True)


def expected_duration(spec: JobSpec, info: MediaInfo) -> float | None:
    """Seconds of media the job will write (for progress percent and picture times), or None when unknown."""
    duration: float | None = None
    if info.duration is not None and info.duration > 0:
        duration = info.duration
    elif info.video is not None and info.video.frames and info.video.fps:
        duration = info.video.frames / info.video.fps
    trim = spec.operations.trim if spec.operations is not None else None
    if trim is None:
        return duration
    if duration is not None:
        duration = max(0.0, duration - trim.start)
    length = trim.length
    if length is not None:
        duration = length if duration is None else min(duration, length)
    return duration


def _trim_args(spec: JobSpec, info: MediaInfo) -> list[str]:
    trim = spec.operations.trim if spec.operations is not None else None
    if trim is None:
        return []
    if info.duration is not None and trim.start >= info.duration:
        raise unsupported(f"trim starts at {trim.start:g} s but the input lasts {info.duration:.3f} s")
    # Input seeking decodes from the keyframe before `start` and drops frames up to it: fast and exact.
    args = ["-ss", num(trim.start)] if trim.start > 0 else []
    if trim.length is not None:
        args += ["-t", num(trim.length)]
    return args


def _input_args(b: JobBuilder, source: Path, window: Chunk | None) -> list[str]:
    args: list[str] = []
    if b.hardware is not None:
        args += b.hardware.global_args()
    if b.threads > 0:
        args += ["-threads", str(b.threads)]
    args += window_args(window) if window is not None else _trim_args(b.spec, b.info)
    ops = b.spec.operations
    if ops is not None and not ops.auto_rotate and b.info.video is not None:
        args += ["-display_rotation", "0"]  # ignore the recorded rotation
    if b.gpu_frames:
        args += ["-hwaccel", "cuda", "-hwaccel_output_format", "cuda", "-extra_hw_frames", "8"]
    args += ["-i", str(source)]
    if b.pre is not None:
        for extra in b.pre.inputs:
            args += extra
    return args


def _quality_args(b: JobBuilder) -> list[str]:
    """The reference null output, the loopback decoders, the scoring graph and its null output."""
    if not b.refs:
        return []
    quality = b.spec.quality
    assert quality is not None
    args: list[str] = []
    for ref, _, _, _ in b.refs:
        args += ["-map", f"[{ref}]"]
    ref_output = len(b.outputs_args)
    args += ["-c:v", "rawvideo", "-f", "null", "-"]
    count = len(b.refs)
    for _, _, output, stream in b.refs:
        args += ["-dec", f"{output}:{stream}"]
    for index in range(count):
        args += ["-dec", f"{ref_output}:{index}"]
    threads = quality.threads or b.threads or _cpu_count()
    chains: list[str] = []
    labels: list[str] = []
    for index, (_, score, _, _) in enumerate(b.refs):
        work_fmt = "yuv420p10le" if score.bit_depth > 8 else "yuv420p"
        pairs = [(f"dec:{index}", f"dec:{count + index}", str(index), score)]
        if score.display is not None:
            resized, dist, ref = _display_chains(index, count, score)
            chains += resized
            pairs = [(dist, ref, str(index), score)]
            if score.native is not None:
                pairs.append((f"qn{index}d", f"qn{index}r", f"{index}n", score.native))
        for dist, ref, key, scored_as in pairs:
            scored, outs = metric_chains(
                dist,
                ref,
                key,
                scored_as.quality,
                model=scored_as.model,
                logs=scored_as.logs,
                threads=threads,
                work_fmt=work_fmt,
            )
            chains += scored
            labels += outs
    require_filters(filter_names(";".join(chains)), b.caps)
    args += ["-filter_complex", ";".join(chains)]
    for label in labels:
        args += ["-map", f"[{label}]"]
    return [*args, "-f", "null", "-"]


def reference_filters(b: JobBuilder, display: tuple[int, int] | None) -> list[str] | None:
    """The reference's own filters when its stream is scored at `display` size (None: the branch's copy)."""
    if display is None or b.video is None:
        return None
    if display == (b.video.display_width, b.video.display_height) and b.video.sample_aspect_ratio == 1.0:
        return []  # the unscaled source is the display-size reference
    return [f"scale={display[0]}:{display[1]}:flags=bicubic", "setsar=1"]


def _display_chains(index: int, count: int, score: StreamScore) -> tuple[list[str], str, str]:
    """Chains bringing decoded stream `index` up to its display size (and a copy of each side to its own
    size for the native score); returns them and the labels of the display-size pair."""
    assert score.display is not None
    width, height = score.display
    dist, ref = f"dec:{index}", f"dec:{count + index}"
    up = f"scale={width}:{height}:flags=bicubic,setsar=1"
    if score.native is None:
        return [f"[{dist}]{up}[qx{index}d]"], f"qx{index}d", ref
    down = f"scale={score.native.width}:{score.native.height}:flags=bicubic,setsar=1"
    return (
        [
            f"[{dist}]split=2[qn{index}d][qu{index}d]",
            f"[qu{index}d]{up}[qx{index}d]",
            f"[{ref}]split=2[qx{index}r][qu{index}r]",
            f"[qu{index}r]{down}[qn{index}r]",
        ],
        f"qx{index}d",
        f"qx{index}r",
    )


def _cpu_count() -> int:
    import os

    return max(1, len(os.sched_getaffinity(0)))


def plan_job(
    spec: JobSpec,
    info: MediaInfo,
    caps: Capabilities,
    source: Path,
    workdir: Path,
    *,
    output_paths: dict[str, Path] | None = None,
    threads: int = 0,
    hardware: HardwareSetup | None = None,
    assets: Assets | None = None,
    score: bool = True,
    native_scores: bool = True,
    window: Chunk | None = None,
    pictures: list[PicturePlan] | None = None,
) -> JobPlan:
    """Everything the job delivers, written by one ffmpeg process, and where each piece lands in `workdir`.

    `output_paths` overrides where plain outputs go (an image sequence's path is its folder). With
    `score`, streams are scored inside the process when the spec asks for quality; `native_scores` False
    leaves out a scaled stream's own-size score (only its display-size one is measured). `window`: encode only
    that chunk's frames of the input (split-and-stitch, media/chunks.py); `pictures`: the chunk's share of
    the sprite tiles and the poster (chunks.chunk_pictures), branches beside the spec's own.
    """
    b = JobBuilder(spec, info, caps, workdir, threads, hardware, assets or Assets(), score, native_scores)
    duration = window.seconds if window is not None else expected_duration(spec, info)
    paths = output_paths or {}

    outputs: list[OutputPlan] = []
    for index, output in enumerate(spec.outputs):
        name = output.name or f"output{index}"
        if output_paths is not None and name not in paths:
            raise ValueError(f"no output path given for output {name!r}")
        path = paths.get(name) or workdir / (
            name if output.container is Container.images else f"{name}.{output.container.value}"
        )
        plan = OutputPlan(index=index, output=output, path=path, video="none", audio="none")
        plan_video(plan, b)
        plan_audio(plan, b)
        if left := plan_subtitles(plan, b):
            b.notes.setdefault("subtitles_not_carried", {})[name] = left
        if plan.video == "none" and plan.audio == "none":
            raise unsupported(
                f"output {name!r} would be empty: it has no video and the input has no audio stream"
            )
        outputs.append(plan)
    groups = [
        plan_group(b, g, i, workdir / "groups" / (g.name or f"group{i}")) for i, g in enumerate(spec.groups)
    ]
    for group in groups:  # HLS carries text tracks as WebVTT renditions; DASH/CMAF and picture tracks not
        carried = {s.track.index for s in group.subtitles}
        if missing := [t for t in b.info.subtitle_tracks if t.index not in carried]:
            b.notes.setdefault("subtitles_not_carried", {})[group.name] = [
                {"index": t.index, "language": t.language, "codec": t.codec} for t in missing
            ]
    pictures = [*_plan_pictures(b, duration), *(pictures or [])]

    families = [p.family for p in outputs if p.video == "encode"] + [
        r.family for g in groups for r in g.rungs
    ]
    b.gpu_frames = use_gpu_frames(b, families)
    video_consumers = _video_consumers(b, outputs, groups, pictures)
    audio_consumers = _audio_consumers(outputs, groups)

    graphs: list[list[str]] = [[]]
    if b.pre is not None:
        graphs = video_graphs(b.pre.label, video_consumers, b.pre.chains)
    graph = graphs[0]  # the sound's chains join the main graph
    for sound in b.sources.sources:  # one fan-out per input track (or mono pair) that branches use
        consumers = audio_consumers.get(sound.ordinal, [])
        if not consumers:
            continue
        head, start = sound.head()
        pre, _ = pre_audio(spec.operations, sound.track)
        if pre:
            head.append(f"[{start}]{','.join(pre)}[apre{sound.ordinal}]")
            start = f"apre{sound.ordinal}"
        graph += fan_out("a", start, consumers, head)
    _assign_labels(outputs, groups, pictures, video_consumers, audio_consumers)
    graphs = [g for g in graphs if g]
    if graphs:
        require_filters(filter_names(";".join(";".join(g) for g in graphs)), caps)

    args = list(GLOBAL_ARGS) + _input_args(b, source, window)
    if graphs and threads > 0:
        args += ["-filter_complex_threads", str(threads)]
    for one in graphs:
        args += ["-filter_complex", ";".join(one)]
    for plan in outputs:
        index = b.add_output(plain_output_args(b, plan), str(output_path(plan.output, plan.path)))
        if plan.score is not None:
            b.score_stream(plan.score, index, 0, f"vref{plan.key}")
    for group in groups:
        if group.spec.type is GroupType.hls:
            hls_outputs(b, group)
        else:
            dash_output(b, group)
    for picture in pictures:
        b.add_output(
            ["-map", f"[{picture_label(picture)}]", *picture.output_args],
            str(picture.folder / picture.pattern),
        )
    for piece in b.outputs_args:
        args += piece
    args += _quality_args(b)
    notes = dict(b.notes)
    if b.gpu_frames:
        notes["gpu_frames"] = True
    return JobPlan(args, outputs, groups, pictures, b.scores, duration, notes, b.loudness_checks)


def picture_label(picture: PicturePlan) -> str:
    """The graph label a picture output maps."""
    return picture.label


def _plan_pictures(b: JobBuilder, duration: float | None) -> list[PicturePlan]:
    spec = b.spec
    if not (spec.thumbnails or spec.sprites or spec.poster):
        return []
    if b.video is None:
        raise unsupported("thumbnails, sprites and posters need video but the input has no video stream")
    src = (b.video.width, b.video.height)
    root = b.workdir / "pictures"
    plans = [plan_thumbnails(t, root / (t.name or "thumbnails"), duration, src) for t in spec.thumbnails]
    plans += [plan_sprites(s, root / (s.name or "sprites"), duration, src) for s in spec.sprites]
    if spec.poster is not None:
        plans.append(plan_poster(spec.poster, root / (spec.poster.name or "poster"), duration, src))
    return plans


def _video_consumers(
    b: JobBuilder, outputs: list[OutputPlan], groups: list[GroupPlan], pictures: list[PicturePlan]
) -> list[Consumer]:
    consumers: list[Consumer] = []
    sw = sw_format(b.info.video) if b.info.video is not None else "nv12"
    hardware = b.hardware

    def tail_of(pix: PixFmt) -> list[str]:
        return hardware.branch_tail(pix) if hardware is not None else []

    # Branches that are not tone-mapped (no head) encode the HDR picture with its HDR10 metadata.
    hdr10 = b.video is not None and b.video.hdr10 is not None

    for plan in outputs:
        if plan.video != "encode":
            continue
        codec = plan.output.video.codec
        pix = plan.output.video.pix_fmt or DEFAULT_PIX_FMT
        consumer = Consumer(
            key=plan.key,
            filters=list(plan.video_filters),
            gif=codec is VideoCodec.gif,
            head=plan.head,
            hdr10=hdr10 and not plan.head and codec is not VideoCodec.gif,
        )
        if b.score and scoreable(codec):
            display = display_size(b, consumer.filters, plan.width, plan.height)
            plan.score = score_for(b, plan.output.name or "", plan.width, plan.height, plan.fps, pix, display)
            consumer.ref = f"vref{plan.key}" if plan.score.measured else None
            consumer.ref_filters = reference_filters(b, display)
        if plan.family is not Family.cpu:
            consumer.tail = tail_of(pix)
        if b.gpu_frames:
            gpu_branch(consumer, plan.family, plan.width, plan.height, pix, sw)
        consumers.append(consumer)
    for gindex, group in enumerate(groups):
        for rindex, rung in enumerate(group.rungs):
            key = f"g{gindex}r{rindex}"
            pix = rung.encode.pix_fmt or DEFAULT_PIX_FMT
            consumer = Consumer(
                key=key, filters=list(rung.filters), head=rung.head, hdr10=hdr10 and not rung.head
            )
            if b.score:
                name = f"{group.name}/{rung.name}"
                size = (rung.encode.width, rung.encode.height)
                display = display_size(b, consumer.filters, *size)
                rung.score = score_for(b, name, *size, group.ladder.fps, pix, display)
                consumer.ref_filters = reference_filters(b, display)
                rung.score.segment_seconds = group.ladder.segment_seconds
                rung.ref = f"vref{key}"
                consumer.ref = rung.ref if rung.score.measured else None
            if rung.family is not Family.cpu:
                consumer.tail = tail_of(pix)
            if b.gpu_frames:
                gpu_branch(consumer, rung.family, rung.encode.width, rung.encode.height, pix, sw)
            consumers.append(consumer)
    for pindex, picture in enumerate(pictures):
        consumer = Consumer(key=f"p{pindex}", filters=[*b.branch_tonemap, *picture.filters])
        if b.branch_tonemap:
            b.notes["tonemapped"] = True
        if b.gpu_frames:
            consumer.filters = ["hwdownload", f"format={sw}", *consumer.filters]
        consumers.append(consumer)
    return consumers


def _audio_consumers(outputs: list[OutputPlan], groups: list[GroupPlan]) -> dict[int, list[Consumer]]:
    """The sound branches, by the sound source (input track or mono pair) each starts from."""
    found: dict[int, list[Consumer]] = {}
    for plan in outputs:
        if plan.audio != "encode":
            continue
        assert plan.audio_source is not None
        found.setdefault(plan.audio_source.ordinal, []).append(
            Consumer(key=plan.key, filters=list(plan.audio_filters))
        )
        for more in plan.more_audio:
            found.setdefault(more.source.ordinal, []).append(
                Consumer(key=more.key, filters=list(more.filters))
            )
    for gindex, group in enumerate(groups):
        for aindex, sound in enumerate(group.audio):
            found.setdefault(sound.source.ordinal, []).append(
                Consumer(key=f"g{gindex}a{aindex}", filters=list(sound.filters))
            )
    return found


def _assign_labels(
    outputs: list[OutputPlan],
    groups: list[GroupPlan],
    pictures: list[PicturePlan],
    video: list[Consumer],
    audio: dict[int, list[Consumer]],
) -> None:
    by_key = {c.key: c.out for c in video}
    by_audio = {c.key: c.out for consumers in audio.values() for c in consumers}
    for plan in outputs:
        if plan.video == "encode":
            plan.video_label = by_key[plan.key]
        if plan.audio == "encode":
            plan.audio_label = by_audio[plan.key]
            for more in plan.more_audio:
                more.label = by_audio[more.key]
    for gindex, group in enumerate(groups):
        for rindex, rung in enumerate(group.rungs):
            rung.label = by_key[f"g{gindex}r{rindex}"]
        for aindex, audio_plan in enumerate(group.audio):
            audio_plan.label = by_audio[f"g{gindex}a{aindex}"]
    for pindex, picture in enumerate(pictures):
        picture.label = by_key[f"p{pindex}"]


def build_transcode(
    spec: JobSpec,
    info: MediaInfo,
    caps: Capabilities,
    input_path: Path,
    output_paths: dict[str, Path],
    *,
    threads: int = 0,
) -> list[str]:
    """ffmpeg arguments (without the binary) writing every plain output of `spec` in one process, unscored."""
    workdir = next(iter(output_paths.values())).parent if output_paths else input_path.parent
    return plan_job(
        spec, info, caps, input_path, workdir, output_paths=output_paths, threads=threads, score=False
    ).argv
