"""A small real client for what groups produce: HLS and DASH read back through their manifests.

Decoding goes through ffmpeg's own hls and dash demuxers (the manifest is the only entry point);
per-segment checks open each segment as a player would fetch it (an fMP4 segment after its init segment).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import av

_ATTR = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


def attributes(line: str) -> dict[str, str]:
    """Attributes of an #EXT-X-... tag, quotes removed (quoted values may hold commas)."""
    body = line.split(":", 1)[1]
    return {key: value.strip('"') for key, value in _ATTR.findall(body)}


@dataclass
class Master:
    variants: list[dict[str, str]]  # attributes plus "URI"
    media: list[dict[str, str]]
    lines: list[str]


def read_master(path: Path) -> Master:
    lines = path.read_text().splitlines()
    assert lines[0] == "#EXTM3U", lines[:1]
    variants, media = [], []
    for index, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF:"):
            variants.append({**attributes(line), "URI": lines[index + 1]})
        elif line.startswith("#EXT-X-MEDIA:"):
            media.append(attributes(line))
    return Master(variants, media, lines)


@dataclass
class MediaPlaylist:
    init: str | None
    segments: list[tuple[str, float]]
    tags: list[str]


def read_media(path: Path) -> MediaPlaylist:
    init = None
    segments: list[tuple[str, float]] = []
    duration = 0.0
    tags = []
    for line in path.read_text().splitlines():
        if line.startswith("#EXT-X-MAP:"):
            init = attributes(line)["URI"]
        elif line.startswith("#EXTINF:"):
            duration = float(line.split(":", 1)[1].split(",")[0])
        elif line.startswith("#"):
            tags.append(line)
        elif line:
            segments.append((line, duration))
    assert "#EXT-X-ENDLIST" in tags and "#EXT-X-PLAYLIST-TYPE:VOD" in tags
    return MediaPlaylist(init, segments, tags)


def decoded_frames(ffmpeg: str, manifest: Path) -> dict[int, int]:
    """Frames decoded per stream, reading everything through the manifest with ffmpeg."""
    result = subprocess.run(
        [
            ffmpeg,
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            manifest.name,
            "-map",
            "0",
            "-f",
            "framecrc",
            "-",
        ],
        cwd=manifest.parent,  # ffmpeg's dash demuxer resolves relative URLs against the working directory
        capture_output=True,
        text=True,
        check=True,
    )
    counts: dict[int, int] = {}
    for line in result.stdout.splitlines():
        if line and not line.startswith("#"):
            stream = int(line.split(",", 1)[0])
            counts[stream] = counts.get(stream, 0) + 1
    return counts


@dataclass
class SegmentStart:
    time: float  # seconds, first video packet's presentation time
    keyframe: bool
    keyframes: list[float]  # every keyframe in the segment
    frames: int


def segment_starts(folder: Path, init: str | None, segments: list[str]) -> list[SegmentStart]:
    """Each segment fetched on its own (after the init segment for fMP4): first picture, keyframes."""
    found = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in segments:
            data = (folder / init).read_bytes() if init else b""
            piece = Path(tmp) / ("piece.mp4" if init else "piece.ts")
            piece.write_bytes(data + (folder / name).read_bytes())
            with av.open(str(piece)) as container:
                stream = container.streams.video[0]
                packets = [p for p in container.demux(stream) if p.pts is not None]
            times = [float(p.pts * p.time_base) for p in packets]
            keys = [float(p.pts * p.time_base) for p in packets if p.is_keyframe]
            first = min(range(len(packets)), key=lambda i: times[i])
            found.append(SegmentStart(times[first], packets[first].is_keyframe, sorted(keys), len(packets)))
    return found


def first_bytes_brands(path: Path) -> bytes:
    """The ftyp box of an MP4 init segment (major and compatible brands)."""
    data = path.read_bytes()
    size = int.from_bytes(data[:4], "big")
    assert data[4:8] == b"ftyp"
    return data[8:size]
