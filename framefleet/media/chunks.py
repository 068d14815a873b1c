"""Split-and-stitch planning, pure: where to cut, what each chunk encodes, how the pieces are joined and
checked, and how per-chunk quality logs become one output's log.

The process edges (reading the frame index, running ffmpeg, storage) are in media/probe.py and
worker/chunked.py; everything here is a function of numbers and specs, so it is tested without processes.

Cutting. A chunk is a range of source frames [start, start + frames). It is encoded from an input seek to
a quarter frame before its first frame's time and a duration of exactly its frame count: ffmpeg's accurate
seek then hands the encoder exactly those frames, with timestamps from zero, whether or not a keyframe
sits there (sparse keyframes cost a little decoding before the cut, never a re-encode of the cut). Cuts are
put on source keyframes when one is near the ideal cut (the decode before the cut is then nil), and on a
multiple of the quality subsample so that the chunks' sampled frames are the whole output's.

Joining. The chunks have identical encoder settings and no sound; the concat demuxer joins them with
`-c copy`, and the sound, encoded once over the whole input by the same planner as an unsplit job, is
muxed in the same step. The joined file is then checked: its frame count is the source's, its timestamps
rise by one frame each (no gap, no duplicate at a join), its duration is frames / fps.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framefleet.core.spec import JobSpec, OutputSpec, VideoCodec, VideoSpec
from framefleet.media.metadata import BITEXACT_MUXER, STRIP_METADATA
from framefleet.media.probe import FrameIndex
from framefleet.media.thumbnails import (
    POSTER_WINDOW_FRAMES,
    TILE_PIXELS,
    PicturePlan,
    bucket_times,
    plan_poster,
    plan_sprite_tiles,
    poster_at,
)

# How far before a chunk's first frame its input seek lands, in frames: far enough that rounding the seek
# time cannot drop that frame, near enough that the frame before is never taken.
SEEK_LEAD_FRAMES = 0.25
# A keyframe this close to an ideal cut (as a share of the chunk length) is taken as the cut.
KEYFRAME_SNAP = 0.25


@dataclass(frozen=True)
class Chunk:
    """Source frames [start_frame, start_frame + frames) and the input window that yields exactly them."""

    index: int
    start_frame: int
    frames: int
    seek: float
    seconds: float

    def view(self) -> dict[str, Any]:
        return {"index": self.index, "start_frame": self.start_frame, "frames": self.frames}


def chunk_count(
    requested: int | str, *, duration: float, chunk_seconds: float, frames: int, limit: int
) -> int:
    """How many chunks: `auto` gives one per `chunk_seconds`; never more than `limit`, nor than frames."""
    if requested == "auto":
        wanted = math.ceil(duration / chunk_seconds - 1e-9) if duration > 0 else 1
    else:
        wanted = int(requested)
    return max(1, min(wanted, limit, frames))


def plan_cuts(
    index: FrameIndex, count: int, *, step: int = 1, whole: tuple[int, int] | None = None
) -> list[Chunk]:
    """`count` chunks of about equal length over the whole source, cut on keyframes where one is near.

    `step`: every cut is a multiple of it (the quality subsample), so per-chunk sampling is global sampling.
    `whole`: frames [first, end) kept in one chunk (the automatic poster's look): a cut inside moves to
    before them. Chunks that would come out empty after snapping are merged away.
    """
    total = index.frames
    length = total / count
    keys = sorted(index.keyframes)
    cuts = [0]
    for k in range(1, count):
        ideal = k * length
        cut = round(ideal)
        near = min(keys, key=lambda f: abs(f - ideal), default=None)
        if near is not None and abs(near - ideal) <= KEYFRAME_SNAP * length:
            cut = near
        cut = int(round(cut / step) * step)
        if whole is not None and whole[0] < cut < whole[1]:
            cut = whole[0] // step * step
        if cuts[-1] < cut < total:
            cuts.append(cut)
    cuts.append(total)
    chunks = []
    for i, (a, b) in enumerate(itertools.pairwise(cuts)):
        seek = max(0.0, index.start + (a - SEEK_LEAD_FRAMES) / index.fps) if a else 0.0
        chunks.append(Chunk(i, a, b - a, seek, (b - a) / index.fps))
    return chunks


def window_args(chunk: Chunk) -> list[str]:
    """Input options selecting the chunk's frames (microsecond precision: ffmpeg's own time unit)."""
    args = ["-ss", f"{chunk.seek:.6f}"] if chunk.seek > 0 else []
    return [*args, "-t", f"{chunk.seconds:.6f}"]


def thumbnail_times(spec: JobSpec, *, frames: int, fps: float) -> dict[str, list[float]]:
    """Every thumbnail set's and sprite set's times over the whole input (`every_seconds` as its buckets'
    starts), those at or past the end left out (names are unique across both)."""
    duration = frames / fps
    found: dict[str, list[float]] = {}
    sets: list[tuple[str, list[float] | None, float | None]] = [
        (t.name or "", t.times, t.every_seconds) for t in spec.thumbnails
    ]
    sets += [(s.name or "", None, s.every_seconds) for s in spec.sprites]
    for name, listed, every_seconds in sets:
        if listed is not None:
            times = list(listed)
        else:
            assert every_seconds is not None
            times = bucket_times(every_seconds, duration)
        # One picture per frame: times whose first frame at or after is the same make one picture.
        frames_seen: set[int] = set()
        kept = []
        for t in times:
            frame = _frame_at(t, fps)
            if t < duration and frame not in frames_seen:
                frames_seen.add(frame)
                kept.append(t)
        found[name] = kept
    return found


def _frame_at(t: float, fps: float) -> int:
    """The first frame at or after `t` (the thumbnail filters' rule)."""
    return max(0, math.ceil(t * fps - 1e-6))


def times_in(chunk: Chunk, times: list[float], fps: float) -> list[float]:
    """The times whose picture (the first frame at or after each) is one of the chunk's frames, made
    relative to the chunk's input seek (its first frame is SEEK_LEAD_FRAMES in): selected there exactly as
    over the whole input."""
    origin = (chunk.start_frame - SEEK_LEAD_FRAMES) / fps if chunk.start_frame else 0.0
    inside = []
    for t in times:
        if chunk.start_frame <= _frame_at(t, fps) < chunk.start_frame + chunk.frames:
            inside.append(round(max(0.0, t - origin), 6))
    return inside


def poster_frames(
    spec: JobSpec, *, duration: float | None, frames: int, fps: float
) -> tuple[int, int] | None:
    """The frames [first, end) the poster is picked from (its time's, or the automatic look's), if any."""
    if spec.poster is None or frames == 0:
        return None
    first = min(_frame_at(poster_at(spec.poster, duration), fps), frames - 1)
    count = 1 if spec.poster.time is not None else POSTER_WINDOW_FRAMES
    return first, min(frames, first + count)


def chunk_time(chunk: Chunk, frame: int, fps: float) -> float:
    """A time on the chunk's own timeline a quarter frame before `frame` (one of its frames): selecting
    from there takes exactly that frame, with no rounding at stake. Later chunks start their timeline at
    their input seek, a quarter frame before their first frame; the first keeps the input's."""
    if chunk.start_frame == 0:
        return max(0.0, (frame - SEEK_LEAD_FRAMES) / fps)
    return (frame - chunk.start_frame) / fps


def chunk_pictures(
    spec: JobSpec,
    chunk: Chunk,
    *,
    times: dict[str, list[float]],
    poster: tuple[int, int] | None,
    fps: float,
    folder: Path,
    src: tuple[int, int],
) -> list[PicturePlan]:
    """The sprite tiles and the poster that fall on the chunk's frames (thumbnails go in its spec)."""
    plans = []
    for sprites in spec.sprites:
        inside = times_in(chunk, times.get(sprites.name or "", []), fps)
        if inside:
            plans.append(plan_sprite_tiles(sprites, folder / (sprites.name or "sprites"), inside, src))
    if spec.poster is not None and poster is not None:
        first, end = poster
        if chunk.start_frame <= first and end <= chunk.start_frame + chunk.frames:
            start = chunk_time(chunk, first, fps)
            name = spec.poster.name or "poster"
            plans.append(plan_poster(spec.poster, folder / name, chunk.seconds, src, start=start))
    return plans


def sheet_argv(listing: Path, plan: PicturePlan) -> list[str]:
    """The join's sheets: the chunks' raw tiles, in order (a concat list), tiled and encoded as an unsplit
    job's graph does after scaling (the raw file keeps no colour range: it is set again)."""
    colour_range = TILE_PIXELS[plan.fmt][1]
    tiles = f"setparams=range={colour_range},tile={plan.columns}x{plan.rows}"
    head = ["-hide_banner", "-nostdin", "-y", "-f", "concat", "-safe", "0", "-i", str(listing)]
    return [*head, *STRIP_METADATA, "-vf", tiles, *plan.output_args, str(plan.folder / plan.pattern)]


def chunk_spec(
    spec: JobSpec,
    chunk: Chunk | None = None,
    *,
    times: dict[str, list[float]] | None = None,
    fps: float = 0.0,
) -> JobSpec:
    """What a chunk encodes: the job's outputs with their video settings, no sound, no text tracks, and the
    thumbnails whose times fall on its frames (`times`: thumbnail_times; sets with none there left out)."""
    data = spec.model_dump(mode="json")
    thumbnails = []
    for thumbs in data.get("thumbnails") or []:
        inside = times_in(chunk, (times or {}).get(thumbs["name"], []), fps) if chunk is not None else []
        if inside:
            thumbnails.append({**thumbs, "times": inside, "every_seconds": None, "destination": None})
    data["thumbnails"] = thumbnails
    data["sprites"], data["poster"] = [], None  # chunk_pictures: tiles and the poster's look, planned apart
    ops = dict(data.get("operations") or {})
    for audio_only in ("loudness", "channel_mix", "audio_track"):
        ops.pop(audio_only, None)
    ops["strip_audio"] = True
    data["operations"] = ops
    for output in data["outputs"]:
        output["audio"] = {"codec": "none"}
        output["subtitles"] = "drop"
        output.pop("audio_tracks", None)
        output["metadata"] = {}
        output.pop("destination", None)
        output["overwrite"] = False
        output.pop("quality_target", None)  # searched before (its crf written in): the chunk encodes it
    data.pop("parallel", None)
    return JobSpec.model_validate(data)


def sound_spec(spec: JobSpec) -> JobSpec:
    """The whole input's sound (and text tracks and tags) for every output, encoded once, without video."""
    outputs = []
    for output in spec.outputs:
        outputs.append(
            OutputSpec.model_validate(
                {
                    **output.model_dump(
                        mode="json", exclude={"video", "destination", "overwrite", "quality_target"}
                    ),
                    "video": VideoSpec(codec=VideoCodec.none).model_dump(mode="json", exclude_none=True),
                }
            )
        )
    data = spec.model_dump(
        mode="json", exclude={"outputs", "quality", "parallel", "thumbnails", "sprites", "poster"}
    )
    data["outputs"] = [o.model_dump(mode="json") for o in outputs]
    return JobSpec.model_validate(data)


def has_sound(spec: JobSpec) -> bool:
    """Whether the job's outputs carry sound at all."""
    if spec.operations is not None and spec.operations.strip_audio:
        return False
    return any(o.audio.codec is not None and o.audio.codec.value != "none" for o in spec.outputs)


def concat_list(paths: list[Path]) -> str:
    """The concat demuxer's list file (paths are ours, in the attempt's folder; quoted for its parser)."""
    lines = ["ffconcat version 1.0"]
    for path in paths:
        quoted = str(path).replace("'", "'\\''")
        lines.append(f"file '{quoted}'")
    return "\n".join(lines) + "\n"


def join_argv(listing: Path, sound: Path | None, output: OutputSpec, target: Path) -> list[str]:
    """Join the chunks without re-encoding, muxing the once-encoded sound (and its text tracks and tags)."""
    args = ["-hide_banner", "-nostdin", "-y", "-f", "concat", "-safe", "0", "-i", str(listing)]
    if sound is not None:
        args += ["-i", str(sound), "-map", "0:v", "-map", "1", "-map_metadata", "1"]
    else:
        args += ["-map", "0:v", "-map_metadata", "-1"]
    args += [*BITEXACT_MUXER, "-c", "copy"]
    if output.video.codec is VideoCodec.hevc:
        args += ["-tag:v", "hvc1"]  # Apple players need the hvc1 tag; concat copies hev1 otherwise
    container = output.container.value
    if container in ("mp4", "mov"):
        args += ["-movflags", "+faststart"]
    if container == "mkv":
        args += ["-cues_to_front", "1"]
    muxer = {"mp4": "mp4", "mov": "mov", "mkv": "matroska"}[container]
    return [*args, "-f", muxer, str(target)]


def check_joined(pts: list[int], *, frames: int, frame_ticks: float, fps: float) -> str | None:
    """Why the joined video is wrong, or None: `pts` are its timestamps in ticks, one frame `frame_ticks`."""
    if len(pts) != frames:
        return f"the joined video has {len(pts)} frames, the source {frames}"
    ordered = sorted(pts)
    for i, (a, b) in enumerate(itertools.pairwise(ordered)):
        step = (b - a) / frame_ticks
        if abs(step - 1.0) > 0.02:
            kind = "a duplicate" if step < 0.5 else "a gap"
            at = a / frame_ticks / fps
            return f"{kind} between frames {i} and {i + 1} ({step:.3f} frames apart at {at:.3f} s)"
    return None


def offset_scores(rows: list[dict[str, Any]], start_frame: int) -> list[dict[str, Any]]:
    """A chunk's per-frame scores renumbered to the whole output's frames."""
    return [{**row, "frame": row["frame"] + start_frame} for row in rows]


def join_scores(parts: list[tuple[int, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Every chunk's per-frame scores as one output's, in frame order: (start_frame, rows) per chunk."""
    joined: list[dict[str, Any]] = []
    for start, rows in sorted(parts, key=lambda part: part[0]):
        joined += offset_scores(rows, start)
    return joined
