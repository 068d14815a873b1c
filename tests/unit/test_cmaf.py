"""CMAF box patching (pure): brands, track header flags, and the layouts it refuses."""

from __future__ import annotations

import struct

import pytest

from framefleet.media.cmaf import NotPatchable, aac_brand, avc_brand, patch_header, patch_segment


def box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def full(kind: bytes, flags: int, body: bytes = b"") -> bytes:
    return box(kind, bytes([0]) + flags.to_bytes(3, "big") + body)


def brands(data: bytes) -> tuple[bytes, list[bytes]]:
    size = struct.unpack(">I", data[:4])[0]
    body = data[8:size]
    return body[:4], [body[i : i + 4] for i in range(8, len(body), 4)]


HEADER = box(b"ftyp", b"iso5", b"\0\0\2\0", b"iso5", b"cmfc") + box(
    b"moov",
    box(
        b"trak",
        full(b"tkhd", 0x3, bytes(80)),
        box(b"mdia", box(b"minf", box(b"stbl", full(b"stco", 0, bytes(4))))),
    ),
    box(b"trak", full(b"tkhd", 0x1, bytes(80))),
)


def segment(tfhd_flags: int = 0x2003A, moofs: int = 1) -> bytes:
    moof = box(b"moof", box(b"traf", full(b"tfhd", tfhd_flags, bytes(4))))
    return (
        box(b"styp", b"msdh", bytes(4), b"msdh", b"msix")
        + box(b"sidx", bytes(8))
        + (moof + box(b"mdat", b"x")) * moofs
    )


def test_header_tracks_get_all_three_flags_and_the_profile_brand() -> None:
    patched = patch_header(HEADER, b"cfhd")
    assert brands(patched) == (b"iso5", [b"iso5", b"cmfc", b"cfhd"])
    assert patched.count(bytes([0, 0, 0, 7])) == 2  # both tkhd version/flags words
    assert len(patched) == len(HEADER) + 4 and patched[28:36] == HEADER[24:32]  # moov follows, unchanged
    assert brands(patch_header(HEADER, None))[1] == [b"iso5", b"cmfc"]


def test_a_header_with_absolute_chunk_offsets_is_refused() -> None:
    offsets = HEADER.replace(full(b"stco", 0, bytes(4)), full(b"stco", 0, struct.pack(">II", 1, 99)))
    with pytest.raises(NotPatchable):
        patch_header(offsets.replace(b"\0\0\0\x10stco", b"\0\0\0\x14stco"), None)


def test_segments_say_cmfs_and_cmff_for_one_fragment() -> None:
    one = segment()
    patched = patch_segment(one, b"caac")
    assert brands(patched) == (b"cmfs", [b"cmfs", b"msdh", b"msix", b"cmff", b"caac"])
    assert patched[36:] == one[24:]  # sidx, moof and mdat follow byte for byte
    assert brands(patch_segment(segment(moofs=2), None)) == (b"cmfs", [b"cmfs", b"msdh", b"msix"])


@pytest.mark.parametrize("flags", [0x2003B, 0x0003A])  # a base data offset; data not addressed from moof
def test_segments_addressed_by_absolute_offset_are_refused(flags: int) -> None:
    with pytest.raises(NotPatchable):
        patch_segment(segment(flags), None)


def test_media_profile_brands() -> None:
    assert avc_brand("avc1.64001f", 1280, 720, 25) == b"cfhd"
    assert avc_brand("avc1.4d401e", 640, 360, 30) == b"cfsd"
    assert avc_brand("avc1.640028", 1920, 1080, 60) == b"cfhd"
    assert avc_brand("avc1.64002a", 1920, 1080, 60) is None  # level 4.2: beyond these profiles
    assert avc_brand("avc1.640033", 3840, 2160, 30) is None
    assert avc_brand("avc1.f4001f", 640, 360, 30) is None  # High 4:4:4
    assert avc_brand("avc1.64001f", 1280, 720, 120) is None
    assert avc_brand("hvc1.1.6.L93.B0", 1280, 720, 25) is None
    assert aac_brand("mp4a.40.2", 2, 48000) == b"caac" and aac_brand("mp4a.40.2", 6, 48000) is None
    assert aac_brand("opus", 2, 48000) is None
