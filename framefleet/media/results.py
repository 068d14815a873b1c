"""What a finished ffmpeg run produced: checked, measured and laid out for publishing and the job result.

Turns a JobPlan's local files into `Piece`s (one file to put at one URI; manifests and WebVTT maps are
marked `late` so they are put after everything they reference) and `Row`s (one job output row each:
plain outputs, image sequences, every group rendition and manifest, thumbnail sets, sprite sheets with
their VTT, the poster). Every video that was asked for is opened again here: a file ffmpeg left empty or
unreadable fails the job instead of being published.
"""

from __future__ import annotations

import contextlib
import dataclasses
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from framefleet.core.failures import FailureClass, JobFailure
from framefleet.core.spec import Container, JobSpec, PosterSpec, QualitySpec, SpriteSpec, ThumbnailSpec
from framefleet.media.command import JobPlan
from framefleet.media.groups import HLS_MASTER, GroupPlan
from framefleet.media.loudness import check_loudness
from framefleet.media.outputs import OutputPlan
from framefleet.media.packaging import PackagedGroup, Rendition, package
from framefleet.media.planning import StreamScore
from framefleet.media.probe import MediaInfo, probe
from framefleet.media.quality import collect
from framefleet.media.thumbnails import PicturePlan, sprite_vtt
from framefleet.storage import join_uri

QUALITY_SUFFIX = ".quality.json"


@dataclass(frozen=True)
class Piece:
    """One local file and the URI it is published at; `late` pieces go after all others.

    `replace` says whether the put may replace an object already there: true in the job's own folder
    (only this job writes there, e.g. an earlier attempt), and for a deliverable with `overwrite: true`.
    """

    local: Path
    uri: str
    late: bool = False
    replace: bool = False


@dataclass
class Row:
    """The fields of one job output row."""

    name: str
    kind: str
    uri: str
    container: str
    size_bytes: int
    group: str | None = None
    duration_seconds: float | None = None
    bitrate_kbps: float | None = None
    width: int | None = None
    height: int | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    metrics: dict[str, Any] | None = None
    metrics_log_uri: str | None = None
    details: dict[str, Any] | None = None


@dataclass
class Results:
    pieces: list[Piece] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)

    def publish_order(self) -> list[Piece]:
        """Media first, then the manifests and maps that point at it."""
        return [p for p in self.pieces if not p.late] + [p for p in self.pieces if p.late]


def _failed(message: str) -> JobFailure:
    return JobFailure(FailureClass.encoder_failed, message)


def _folder_uri(base: str) -> str:
    return base if base.endswith("/") else base + "/"


def webp_info(path: Path) -> tuple[int, int, int]:
    """(width, height, frames) of an animated WebP, read from its RIFF chunks."""
    data = path.read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise _failed(f"{path.name} is not a WebP file")
    width = height = frames = 0
    offset = 12
    while offset + 8 <= len(data):
        kind, size = data[offset : offset + 4], struct.unpack("<I", data[offset + 4 : offset + 8])[0]
        body = data[offset + 8 : offset + 8 + size]
        if kind == b"VP8X" and len(body) >= 10:
            width = int.from_bytes(body[4:7], "little") + 1
            height = int.from_bytes(body[7:10], "little") + 1
        elif kind == b"ANMF":
            frames += 1
        offset += 8 + size + (size & 1)
    return width, height, max(frames, 1)


def _collected(score: StreamScore) -> dict[str, Any]:
    """The summary of a stream scored in this process, from its raw logs (writing its unified log)."""
    return collect(
        score.logs,
        score.quality,
        model=score.model,
        fps=score.fps,
        segment_seconds=score.segment_seconds,
        bit_depth=score.bit_depth,
    )


def score_summary(
    score: StreamScore | None,
    quality: QualitySpec | None,
    pooled: Callable[[StreamScore], dict[str, Any]] = _collected,
) -> dict[str, Any] | None:
    """A scored stream's `metrics`: `pooled` summarises each measured stream (its own logs here; a split
    job's joined chunk scores in worker/chunked.py), and this lays the result out the same way for both."""
    if score is None or quality is None:
        return None
    if not score.measured:
        return {"skipped": score.skipped}
    summary = pooled(score)
    if score.display is not None:
        # Scored upscaled to the display size against the unscaled source; the own-size score beside it.
        summary["scored_at"] = {"width": score.display[0], "height": score.display[1]}
        if score.native is not None:
            native = score_summary(score.native, quality, pooled) or {}
            summary["native"] = native | {"width": score.native.width, "height": score.native.height}
    return summary | ({"skipped": score.skipped} if score.skipped else {})


def media_row(name: str, kind: str, uri: str, container: str, info: MediaInfo, size: int) -> Row:
    """A row for a media file: its size, length, bitrate, picture size and codecs as probed."""
    duration = info.duration
    return Row(
        name=name,
        kind=kind,
        uri=uri,
        container=container,
        size_bytes=size,
        duration_seconds=round(duration, 3) if duration else None,
        bitrate_kbps=round(size * 8 / duration / 1000, 1) if duration else None,
        width=info.video.width if info.video else None,
        height=info.video.height if info.video else None,
        video_codec=info.video.codec if info.video else None,
        audio_codec=info.audio.codec if info.audio else None,
    )


def _plain_output(plan: OutputPlan, base: str, quality: QualitySpec | None, results: Results) -> None:
    output = plan.output
    name = output.name or ""
    container = output.container
    if container is Container.images:
        files = sorted(p for p in plan.path.iterdir() if p.is_file())
        if not files:
            raise _failed(f"ffmpeg produced no pictures for output {name}")
        folder = _folder_uri(output.destination or join_uri(base, name))
        results.pieces += [Piece(f, folder + f.name) for f in files]
        first = probe(files[0])
        size = sum(f.stat().st_size for f in files)
        row = media_row(name, "images", folder, container.value, first, size)
        row.duration_seconds = row.bitrate_kbps = None
        row.details = {"files": len(files), "names": [f.name for f in files[:1000]]}
        results.rows.append(row)
        return
    local = plan.path
    if not local.exists() or local.stat().st_size == 0:
        raise _failed(f"ffmpeg produced no data for output {name}")
    uri = output.destination or join_uri(base, f"{name}.{container.value}")
    size = local.stat().st_size
    if container is Container.webp:
        width, height, frames = webp_info(local)
        row = Row(name, "file", uri, container.value, size, width=width, height=height, video_codec="webp")
        row.details = {"frames": frames}
    else:
        try:
            info = probe(local, decode=False)  # ffmpeg wrote it and exited 0: its streams say enough
        except JobFailure as exc:
            raise _failed(f"output {name} is unreadable: {exc}") from exc
        row = media_row(name, "file", uri, container.value, info, size)
    results.pieces.append(Piece(local, uri))
    row.metrics = score_summary(plan.score, quality)
    if plan.score is not None and plan.score.measured:
        row.metrics_log_uri = uri + QUALITY_SUFFIX
        results.pieces.append(Piece(plan.score.logs.unified, row.metrics_log_uri))
    results.rows.append(row)


def _rendition_row(group: GroupPlan, rendition: Rendition, folder: str, pkg: PackagedGroup) -> Row:
    main = rendition.playlist or rendition.init or rendition.segments[0].name
    size = sum((pkg.folder / f).stat().st_size for f in rendition.files())
    video = rendition.kind == "video"
    container = "ts" if rendition.segments[0].name.endswith(".ts") else "mp4"
    kind = "rendition" if video else "audio"
    if rendition.kind == "subtitles":
        kind = container = "vtt"
    row = Row(
        name=f"{group.name}/{rendition.name}",
        kind=kind,
        group=group.name,
        uri=folder + main,
        container=container,
        size_bytes=size,
        duration_seconds=round(rendition.duration, 3),
        bitrate_kbps=round(rendition.average_bps / 1000, 1),
        width=rendition.width if video else None,
        height=rendition.height if video else None,
        details=rendition.details(),
    )
    codec = (rendition.codecs or "").split(".")[0]
    if video:
        row.video_codec = {"avc1": "h264", "hvc1": "hevc", "hev1": "hevc", "av01": "av1", "vp09": "vp9"}.get(
            codec
        )
    else:
        row.audio_codec = {"mp4a": "aac", "opus": "opus"}.get(codec)
    return row


def _group(group: GroupPlan, base: str, quality: QualitySpec | None, results: Results) -> None:
    pkg = package(group)
    folder = _folder_uri(group.spec.destination or join_uri(base, group.name))
    manifests = set(pkg.manifests.values())
    for name in pkg.publish_order():
        results.pieces.append(Piece(pkg.folder / name, folder + name, late=name in manifests))
    scores = {rung.name: rung.score for rung in group.rungs}
    for rendition in pkg.renditions:
        row = _rendition_row(group, rendition, folder, pkg)
        score = scores.get(rendition.name) if rendition.kind == "video" else None
        row.metrics = score_summary(score, quality)
        if score is not None and score.measured:
            row.metrics_log_uri = f"{folder}quality/{rendition.name}{QUALITY_SUFFIX}"
            results.pieces.append(Piece(score.logs.unified, row.metrics_log_uri))
        results.rows.append(row)
    total = sum(r.size_bytes for r in results.rows if r.group == group.name)
    facts: dict[str, Any] = {
        "type": group.spec.type.value,
        "segment_seconds": round(group.ladder.segment_seconds, 6),
        "frame_rate": round(group.ladder.fps, 3),
        "gop_frames": group.ladder.gop,
        "renditions": [r.name for r in pkg.renditions],
        "dropped": group.ladder.dropped,
        "notes": group.ladder.notes,
        "total_bytes": total,
    }
    for kind, manifest in pkg.manifests.items():
        name = group.name if kind == "hls" or len(pkg.manifests) == 1 else f"{group.name}/{kind}"
        container = "m3u8" if manifest == HLS_MASTER else "mpd"
        path = pkg.folder / manifest
        results.rows.append(
            Row(
                name=name,
                kind="manifest",
                group=group.name,
                uri=folder + manifest,
                container=container,
                size_bytes=path.stat().st_size,
                duration_seconds=round(max(r.duration for r in pkg.renditions), 3),
                details={**facts, "manifest": kind},
            )
        )


def picture_results(
    plan: PicturePlan, spec_destination: str | None, base: str, duration: float | None
) -> Results:
    """The pieces and rows of one picture deliverable whose files are in `plan.folder`."""
    found = Results()
    files = sorted(p for p in plan.folder.iterdir() if p.is_file() and not p.name.endswith(".vtt"))
    if not files:
        raise _failed(f"ffmpeg produced no pictures for {plan.name}")
    size = sum(f.stat().st_size for f in files)
    facts: dict[str, Any] = {"width": plan.width, "height": plan.height, "format": plan.fmt.value}
    if plan.kind == "poster":
        uri = spec_destination or join_uri(base, plan.pattern)
        found.pieces.append(Piece(files[0], uri))
        found.rows.append(
            Row(
                plan.name,
                "poster",
                uri,
                plan.fmt.value,
                size,
                width=plan.width,
                height=plan.height,
                details=facts,
            )
        )
        return found
    folder = _folder_uri(spec_destination or join_uri(base, plan.name))
    found.pieces += [Piece(f, folder + f.name) for f in files]
    if plan.kind == "thumbnails":
        times = plan.times if not plan.every_seconds else [i * plan.every_seconds for i in range(len(files))]
        facts["files"] = [
            {"uri": folder + f.name, "time": round(t, 6)} for f, t in zip(files, times, strict=False)
        ]
        facts["dropped_times"] = plan.dropped_times
        found.rows.append(
            Row(plan.name, "thumbnails", folder, plan.fmt.value, size, width=plan.width, height=plan.height)
        )
        found.rows[-1].details = facts
        return found
    tiles = min(len(plan.times), len(files) * plan.columns * plan.rows)
    vtt = plan.folder / f"{plan.name}.vtt"
    vtt.write_text(sprite_vtt(plan, [f.name for f in files], tiles, duration), encoding="utf-8")
    facts |= {
        "sheets": [folder + f.name for f in files],
        "tiles": tiles,
        "columns": plan.columns,
        "rows": plan.rows,
        "every_seconds": plan.every_seconds,
        "vtt": folder + vtt.name,
    }
    found.rows.append(Row(plan.name, "sprites", folder, plan.fmt.value, size, details=facts))
    found.pieces.append(Piece(vtt, folder + vtt.name, late=True))
    found.rows.append(
        Row(
            f"{plan.name}/vtt",
            "vtt",
            folder + vtt.name,
            "vtt",
            vtt.stat().st_size,
            group=plan.name,
            duration_seconds=round(duration, 3) if duration else None,
            details={"sheets": len(files), "tiles": tiles},
        )
    )
    return found


def collect_results(plan: JobPlan, spec: JobSpec, base: str) -> Results:
    """Check, measure and lay out everything `plan`'s ffmpeg run wrote; `base` is the job's output root."""
    results = Results()
    for output in plan.outputs:
        with _replacing(results, output.output):
            _plain_output(output, base, spec.quality, results)
    for group in plan.groups:
        with _replacing(results, group.spec):
            _group(group, base, spec.quality, results)
    pictures: dict[str, ThumbnailSpec | SpriteSpec | PosterSpec] = {t.name or "": t for t in spec.thumbnails}
    pictures |= {s.name or "": s for s in spec.sprites}
    if spec.poster is not None:
        pictures[spec.poster.name or "poster"] = spec.poster
    for picture in plan.pictures:
        deliverable = pictures.get(picture.name)
        destination = deliverable.destination if deliverable is not None else None
        found = picture_results(picture, destination, base, plan.duration)
        results.pieces += allow_replace(found.pieces, deliverable)
        results.rows += found.rows
    # Raises when a stream misses its loudness target and the spec says to fail; otherwise the reading
    # (with its verdict) is stored with the output it belongs to.
    # Every output with sound says which input audio tracks it left out (none are dropped unannounced).
    unused = plan.notes.get("unused_audio_tracks")
    if unused:
        for row in results.rows:
            if row.kind == "audio" or row.audio_codec is not None:
                row.details = {**(row.details or {}), "unused_audio_tracks": unused}
    # Subtitle tracks an output's container (or a group) could not carry are named, never dropped silently.
    left_out = plan.notes.get("subtitles_not_carried") or {}
    for row in results.rows:
        if row.name in left_out:
            row.details = {**(row.details or {}), "subtitles_not_carried": left_out[row.name]}
    readings = {r.name: r for r in check_loudness(plan.loudness)}
    for row in results.rows:
        if row.name in readings:
            row.metrics = {**(row.metrics or {}), "loudness": readings[row.name].summary()}
        # An output's further audio_tracks are read as `<name>#<k>`: listed after the first's, in order.
        more = [readings[f"{row.name}#{k}"] for k in range(1, 9) if f"{row.name}#{k}" in readings]
        if more:
            row.metrics = {**(row.metrics or {}), "loudness_tracks": [r.summary() for r in more]}
    return results


class _Deliverable(Protocol):
    destination: str | None
    overwrite: bool


@contextlib.contextmanager
def _replacing(results: Results, deliverable: _Deliverable) -> Iterator[None]:
    """Mark the pieces added inside the block with whether `deliverable` may replace what it meets."""
    start = len(results.pieces)
    yield
    results.pieces[start:] = allow_replace(results.pieces[start:], deliverable)


def allow_replace(pieces: list[Piece], deliverable: _Deliverable | None) -> list[Piece]:
    own_folder = deliverable is None or deliverable.destination is None
    replace = own_folder or bool(deliverable and deliverable.overwrite)
    return [dataclasses.replace(piece, replace=replace) for piece in pieces]
