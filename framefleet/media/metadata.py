"""What a written file may say about itself: nothing from the input, only the tags the spec sets.

A phone video carries its GPS position (with altitude), the device's make and model, comments and
arbitrary custom tags; ffmpeg copies all of them, with the chapters, into every output by default and adds
its own version as `encoder` tags. Every output of a job (plain files, copies, HLS playlists and their fMP4
init segments, DASH/CMAF, pictures) therefore drops the input's global, stream and chapter metadata and
writes in bit-exact mode, which leaves the library versions out. The spec's `metadata` is written back.
A split job's join muxes its chunks and its sound again: it takes the tags from the sound (already only the
spec's) and writes bit-exact too.
"""

from __future__ import annotations

from framefleet.core.spec import OutputTag

# Without it a muxer names its library version (`encoder` in MP4/MOV, WritingApp/MuxingApp in Matroska).
BITEXACT_MUXER = ("-fflags", "+bitexact")
# -flags:v / -flags:a apply to each encoder (ignored by stream copies).
STRIP_METADATA = (
    "-map_metadata",
    "-1",
    "-map_chapters",
    "-1",
    *BITEXACT_MUXER,
    "-flags:v",
    "+bitexact",
    "-flags:a",
    "+bitexact",
)


def tag_args(tags: dict[OutputTag, str], *, audio: bool) -> list[str]:
    """-metadata options writing the spec's tags: language on the audio stream, the rest on the file."""
    args: list[str] = []
    for tag, value in tags.items():
        if tag == "language":
            if audio:
                args += ["-metadata:s:a", f"language={value}"]
        else:
            args += ["-metadata", f"{tag}={value}"]
    return args
