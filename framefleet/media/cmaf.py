"""What ffmpeg's CMAF output leaves short of ISO/IEC 23000-19, patched into the written files (pure).

ffmpeg (`movflags=+cmaf`) writes the `cmfc` structural brand into each CMAF header's ftyp, but its track
headers say only enabled|in_movie (CMAF wants in_preview too: flags 0x7), and its segments' styp carries
only DASH brands (`msdh`, `msix`). These edits make the files say what they are:

- header (init segment): tkhd flags 0x7 on every track; ftyp gains `cmfc` if missing and the CMAF media
  profile brand when the track meets that profile;
- segment: styp gets `cmfs` as its major brand, keeps the DASH brands, and adds `cmff` when the segment
  is a single CMAF fragment (one moof) and the media profile brand.

Brand boxes are rewritten whole (one may grow by a few bytes). That is safe only because nothing in these
files points at absolute byte positions: fragments address their data from their own moof
(default-base-is-moof) and sidx from its own end. A file where that is not so is refused, not patched.
The colour box (`colr`) is written by ffmpeg itself from the stream's colour tags (media/groups.py).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

TRACK_FLAGS = 0x7  # track_enabled | track_in_movie | track_in_preview
CMAF_HEADER = b"cmfc"
CMAF_SEGMENT = b"cmfs"
CMAF_FRAGMENT = b"cmff"
TFHD_BASE_DATA_OFFSET = 0x1
TFHD_DEFAULT_BASE_IS_MOOF = 0x20000
# AVC media profiles (ISO/IEC 23000-19 Annex A): brand, highest level_idc, largest picture, frame rate.
AVC_PROFILES = ((b"cfsd", 31, (864, 576), 60.0), (b"cfhd", 40, (1920, 1080), 60.0))
AVC_PROFILE_IDCS = frozenset({66, 77, 100})  # baseline (constrained), main and high: all within High
AAC_CODECS = frozenset({"mp4a.40.2", "mp4a.40.5", "mp4a.40.29"})


class NotPatchable(ValueError):
    """The file's layout is not what the patcher can edit safely."""


def _boxes(
    data: bytes | bytearray, start: int = 0, end: int | None = None
) -> Iterator[tuple[bytes, int, int, int]]:
    """(type, box start, payload start, box end) of each box in data[start:end]."""
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
        if size < header or pos + size > end:
            raise NotPatchable(f"box {kind!r} at byte {pos} overruns its parent")
        yield kind, pos, pos + header, pos + size
        pos += size


def _children(
    data: bytes | bytearray, path: list[bytes], start: int = 0, end: int | None = None
) -> list[tuple[int, int, int]]:
    """(box start, payload start, box end) of every box at `path` (a list of types) below data[start:end]."""
    found = []
    for kind, box, payload, box_end in _boxes(data, start, end):
        if kind != path[0]:
            continue
        found += [(box, payload, box_end)] if len(path) == 1 else _children(data, path[1:], payload, box_end)
    return found


def _brand_box(kind: bytes, major: bytes, minor: bytes, brands: list[bytes]) -> bytes:
    payload = major + minor + b"".join(dict.fromkeys(brands))
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _rebrand(data: bytes, kind: bytes, major: bytes | None, add: list[bytes]) -> bytes:
    """`data` with its top-level `kind` box's major brand set (None: kept) and brands `add` appended."""
    for found, box, payload, end in _boxes(data):
        if found != kind:
            continue
        body = data[payload:end]
        current = [body[i : i + 4] for i in range(8, len(body) - 3, 4)]
        new_major = major or body[:4]
        brands = [new_major, *current, *add] if major else [*current, *add]
        return data[:box] + _brand_box(kind, new_major, body[4:8], brands) + data[end:]
    raise NotPatchable(f"no {kind.decode()} box")


def avc_brand(codecs: str, width: int, height: int, fps: float) -> bytes | None:
    """The AVC media profile brand a track meets, from its RFC 6381 codec string, size and rate."""
    if not codecs.startswith(("avc1.", "avc3.")) or len(codecs) != 11:
        return None
    profile_idc, level_idc = int(codecs[5:7], 16), int(codecs[9:11], 16)
    if profile_idc not in AVC_PROFILE_IDCS:
        return None
    for brand, level, (max_w, max_h), max_fps in AVC_PROFILES:
        fits = max(width, height) <= max_w and min(width, height) <= max_h
        if level_idc <= level and fits and fps <= max_fps:
            return brand
    return None


def aac_brand(codecs: str, channels: int, sample_rate: int) -> bytes | None:
    """`caac` for AAC (LC, HE, HEv2) of at most two channels at 48 kHz or less."""
    return b"caac" if codecs in AAC_CODECS and channels <= 2 and sample_rate <= 48000 else None


def patch_header(data: bytes, profile: bytes | None) -> bytes:
    """A CMAF header with tkhd flags 0x7 and the structural (and media profile) brands in its ftyp."""
    edited = bytearray(data)
    tracks = _children(edited, [b"moov", b"trak", b"tkhd"])
    if not tracks:
        raise NotPatchable("no track header")
    for _, payload, _ in tracks:
        flags = int.from_bytes(edited[payload + 1 : payload + 4], "big") | TRACK_FLAGS
        edited[payload + 1 : payload + 4] = flags.to_bytes(3, "big")
    for _, payload, _ in _children(edited, [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stco"]):
        if struct.unpack(">I", edited[payload + 4 : payload + 8])[0]:
            raise NotPatchable("the header holds absolute chunk offsets")
    return _rebrand(bytes(edited), b"ftyp", None, [CMAF_HEADER, *([profile] if profile else [])])


def patch_segment(data: bytes, profile: bytes | None) -> bytes:
    """A CMAF segment whose styp says so: major `cmfs`, `cmff` for a single fragment, the profile."""
    moofs = _children(data, [b"moof"])
    for _, payload, _ in _children(data, [b"moof", b"traf", b"tfhd"]):
        flags = int.from_bytes(data[payload + 1 : payload + 4], "big")
        if flags & TFHD_BASE_DATA_OFFSET or not flags & TFHD_DEFAULT_BASE_IS_MOOF:
            raise NotPatchable("a track fragment addresses its data by absolute offset")
    add = [CMAF_FRAGMENT] if len(moofs) == 1 else []
    return _rebrand(data, b"styp", CMAF_SEGMENT, [*add, *([profile] if profile else [])])
