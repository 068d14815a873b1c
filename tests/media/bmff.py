"""A small ISO BMFF (MP4) reader for tests: walks boxes and decodes the few that conformance checks read.

Containers are descended into; everything else is kept as raw bytes. Sample entries (avc1, hvc1, mp4a...)
are containers after their fixed fields, so `colr`/`avcC` are found under stsd/avc1.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

CONTAINERS = {
    b"moov",
    b"trak",
    b"mdia",
    b"minf",
    b"stbl",
    b"mvex",
    b"moof",
    b"traf",
    b"edts",
    b"dinf",
    b"udta",
}
# Sample entries: bytes to skip before their child boxes (SampleEntry 8 + Visual 70 / Audio 20).
VISUAL_ENTRIES = {b"avc1", b"avc3", b"hvc1", b"hev1", b"av01", b"vp09", b"encv"}
AUDIO_ENTRIES = {b"mp4a", b"Opus", b"fLaC", b"ac-3", b"ec-3", b"enca"}


@dataclass
class Box:
    type: bytes
    offset: int  # of the box header in the file
    payload: bytes
    children: list[Box] = field(default_factory=list)

    def find(self, path: str) -> list[Box]:
        """Boxes at a slash-separated path of types below this one, e.g. "trak/mdia/mdhd"."""
        return _find(self.children, path)

    def first(self, path: str) -> Box:
        found = self.find(path)
        assert found, f"no {path} under {self.type!r}"
        return found[0]


def _find(boxes: list[Box], path: str) -> list[Box]:
    head, _, rest = path.partition("/")
    found = [b for b in boxes if b.type == head.encode()]
    return [x for b in found for x in _find(b.children, rest)] if rest else found


def parse(data: bytes, start: int = 0, end: int | None = None, base: int = 0) -> list[Box]:
    """Every box in data[start:end], children of containers and sample entries included."""
    boxes: list[Box] = []
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
            header = 16
        elif size == 0:
            size = end - pos
        assert size >= header and pos + size <= end, f"box {kind!r} at {base + pos} overruns its parent"
        body = data[pos + header : pos + size]
        box = Box(kind, base + pos, body)
        if kind in CONTAINERS:
            box.children = parse(body, base=base + pos + header)
        elif kind == b"stsd":
            box.children = parse(body, 8, base=base + pos + header)  # version, flags, entry count
        elif kind in VISUAL_ENTRIES:
            box.children = parse(body, 78, base=base + pos + header)
        elif kind in AUDIO_ENTRIES:
            box.children = parse(body, 28, base=base + pos + header)
        boxes.append(box)
        pos += size
    return boxes


def read(path: Path) -> list[Box]:
    """The top-level boxes of a file."""
    return parse(path.read_bytes())


def full_box(box: Box) -> tuple[int, int, bytes]:
    """(version, flags, rest) of a FullBox."""
    return box.payload[0], int.from_bytes(box.payload[1:4], "big"), box.payload[4:]


def brands(box: Box) -> tuple[bytes, list[bytes]]:
    """(major brand, compatible brands) of an ftyp or styp box."""
    body = box.payload
    return body[:4], [body[i : i + 4] for i in range(8, len(body), 4)]


def tkhd_flags(trak: Box) -> int:
    return full_box(trak.first("tkhd"))[1]


def track_id(trak: Box) -> int:
    version, _, rest = full_box(trak.first("tkhd"))
    return struct.unpack(">I", rest[16:20] if version == 1 else rest[8:12])[0]


def timescale(trak: Box) -> int:
    version, _, rest = full_box(trak.first("mdia/mdhd"))
    return struct.unpack(">I", rest[16:20] if version == 1 else rest[8:12])[0]


def handler(trak: Box) -> bytes:
    return full_box(trak.first("mdia/hdlr"))[2][4:8]


def edits(trak: Box) -> list[tuple[int, int]]:
    """(segment duration, media time) of each edit of a track's edit list; [] without one."""
    found = trak.find("edts/elst")
    if not found:
        return []
    version, _, rest = full_box(found[0])
    count = struct.unpack(">I", rest[:4])[0]
    fmt, width = (">Qq", 16) if version == 1 else (">Ii", 8)
    return [struct.unpack(fmt, rest[4 + i * (width + 4) : 4 + i * (width + 4) + width]) for i in range(count)]


@dataclass
class Fragment:
    track: int
    decode_time: int  # tfdt
    samples: list[tuple[int, int]]  # (duration, composition offset) in the track's timescale

    def presentation_times(self) -> list[int]:
        """Each sample's presentation time as written: decode time plus composition offset, no edits."""
        times, dts = [], self.decode_time
        for duration, cts in self.samples:
            times.append(dts + cts)
            dts += duration
        return times


def fragments(boxes: list[Box]) -> list[Fragment]:
    """Each track fragment of each moof: its decode time and its samples' durations and offsets."""
    found = []
    for traf in _find(boxes, "moof/traf"):
        _, tf_flags, tfhd = full_box(traf.first("tfhd"))
        track = struct.unpack(">I", tfhd[:4])[0]
        pos = 4 + (8 if tf_flags & 0x1 else 0) + (4 if tf_flags & 0x2 else 0)
        default_duration = struct.unpack(">I", tfhd[pos : pos + 4])[0] if tf_flags & 0x8 else 0
        version, _, tfdt = full_box(traf.first("tfdt"))
        decode = struct.unpack(">Q" if version == 1 else ">I", tfdt[: 8 if version == 1 else 4])[0]
        samples: list[tuple[int, int]] = []
        for trun in traf.find("trun"):
            tr_version, flags, body = full_box(trun)
            count = struct.unpack(">I", body[:4])[0]
            pos = 4 + (4 if flags & 0x1 else 0) + (4 if flags & 0x4 else 0)
            for _ in range(count):
                duration = cts = 0
                if flags & 0x100:
                    duration = struct.unpack(">I", body[pos : pos + 4])[0]
                    pos += 4
                pos += (4 if flags & 0x200 else 0) + (4 if flags & 0x400 else 0)
                if flags & 0x800:
                    cts = struct.unpack(">i" if tr_version == 1 else ">I", body[pos : pos + 4])[0]
                    pos += 4
                samples.append((duration or default_duration, cts))
        found.append(Fragment(track, decode, samples))
    return found
