"""RFC 6381 codec strings (avc1.64001f, hvc1.1.6.L93.B0, av01.0.08M.08, mp4a.40.2) read from the bitstream.

HLS master playlists must name each variant's codecs exactly; they come from the produced stream's own
parameter sets (avcC/hvcC/av1C records in MP4, SPS NAL units in MPEG-TS), never from what was asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av

AAC_OBJECT_TYPES = {"LC": 2, "HE-AAC": 5, "HE-AACv2": 29, "Main": 1, "LTP": 4}


def _unescape(nal: bytes) -> bytes:
    """Drop the emulation-prevention bytes (00 00 03 -> 00 00) of a NAL unit."""
    out = bytearray()
    zeros = 0
    for byte in nal:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def annexb_nals(data: bytes) -> list[bytes]:
    """NAL units of an Annex B byte stream (start codes 00 00 01 / 00 00 00 01)."""
    nals: list[bytes] = []
    start = -1
    i = 0
    while i + 2 < len(data):
        if data[i] == 0 and data[i + 1] == 0 and data[i + 2] == 1:
            if start >= 0:
                nals.append(data[start:i].rstrip(b"\x00"))
            start = i + 3
            i += 3
            continue
        i += 1
    if start >= 0:
        nals.append(data[start:])
    return [n for n in nals if n]


def avc_string(profile: int, constraints: int, level: int) -> str:
    """avc1.PPCCLL."""
    return f"avc1.{profile:02x}{constraints:02x}{level:02x}"


def _reverse32(value: int) -> int:
    return int(f"{value:032b}"[::-1], 2)


def hevc_string(ptl: bytes, tag: str = "hvc1") -> str:
    """hvc1 string from the 12 bytes of general profile_tier_level (space/tier/profile ... level)."""
    space, tier, profile = ptl[0] >> 6, (ptl[0] >> 5) & 1, ptl[0] & 0x1F
    compat = int.from_bytes(ptl[1:5], "big")
    constraints = list(ptl[5:11])
    while constraints and constraints[-1] == 0:
        constraints.pop()
    level = ptl[11]
    parts = [tag, f"{'' if space == 0 else 'ABC'[space - 1]}{profile}", f"{_reverse32(compat):x}"]
    parts.append(f"{'H' if tier else 'L'}{level}")
    parts += [f"{c:X}" for c in constraints]
    return ".".join(parts)


def av1_string(av1c: bytes) -> str:
    """av01.P.LLT.DD from an AV1CodecConfigurationRecord."""
    profile = av1c[1] >> 5
    level = av1c[1] & 0x1F
    tier = "H" if av1c[2] >> 7 else "M"
    high, twelve = (av1c[2] >> 6) & 1, (av1c[2] >> 5) & 1
    depth = 12 if twelve else (10 if high else 8)
    return f"av01.{profile}.{level:02d}{tier}.{depth:02d}"


def _from_extradata(codec: str, extra: bytes) -> str | None:
    if not extra:
        return None
    if codec == "h264":
        if extra[0] == 1 and len(extra) >= 4:
            return avc_string(extra[1], extra[2], extra[3])
        for nal in annexb_nals(extra):
            if nal[0] & 0x1F == 7 and len(nal) >= 4:
                return avc_string(nal[1], nal[2], nal[3])
    if codec == "hevc":
        if extra[0] == 1 and len(extra) >= 13:
            return hevc_string(extra[1:13])
        for nal in annexb_nals(extra):
            if (nal[0] >> 1) & 0x3F == 33:
                sps = _unescape(nal)
                if len(sps) >= 15:
                    return hevc_string(sps[3:15])
    if codec == "av1" and extra[0] & 0x7F == 1 and len(extra) >= 4:
        return av1_string(extra)
    return None


def _video_string(container: Any, stream: Any) -> str | None:
    codec = stream.codec_context.codec.canonical_name
    found = _from_extradata(codec, bytes(stream.codec_context.extradata or b""))
    if found is not None or codec not in ("h264", "hevc"):
        return found
    for packet in container.demux(stream):
        data = bytes(packet)
        if data:
            return _from_extradata(codec, data)
    return None


def _audio_string(stream: Any) -> str | None:
    codec = stream.codec_context.codec.canonical_name
    if codec == "aac":
        profile = stream.codec_context.profile or "LC"
        return f"mp4a.40.{AAC_OBJECT_TYPES.get(profile, 2)}"
    if codec == "opus":
        return "opus"
    if codec == "mp3":
        return "mp4a.40.34"
    return None


def codec_string(path: Path) -> str | None:
    """The codec string of the first video (else audio) stream of an MP4 init segment or a TS segment."""
    with av.open(str(path)) as container:
        if container.streams.video:
            return _video_string(container, container.streams.video[0])
        if container.streams.audio:
            return _audio_string(container.streams.audio[0])
    return None
