"""What a DASH MPD written here must get right, checked before it is published (pure functions).

ffmpeg's dash muxer declares `maxSegmentDuration` from the target segment length, although AAC segments
end on whole audio frames and run a little longer, and `bitstreamSwitching="true"` on every adaptation
set, although each representation has its own initialization segment (its own SPS/PPS): a player that
switches rungs without fetching the new init segment cannot decode. `fix_mpd` makes both true from the
real segments; `mpd_problems` lists every rule a manifest breaks, and the worker refuses to publish one
that breaks any.

Rules checked (ISO/IEC 23009-1): a profile is declared; each representation's SegmentTimeline adds up
to mediaPresentationDuration (within one video frame, or one audio frame for sound); no segment is
longer than maxSegmentDuration; bitstreamSwitching is only declared where one initialization segment
serves the whole adaptation set.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

NS = {"mpd": "urn:mpeg:dash:schema:mpd:2011"}
PROFILES = {
    "urn:mpeg:dash:profile:isoff-live:2011",
    "urn:mpeg:dash:profile:isoff-on-demand:2011",
    "urn:mpeg:dash:profile:full:2011",
    "urn:mpeg:dash:profile:cmaf:2019",
}
AUDIO_FRAME_SAMPLES = 1024  # AAC; longer than Opus's 960 and so the tolerance for both
DEFAULT_TOLERANCE = 0.05


@dataclass
class Timeline:
    """One representation's segments as its SegmentTimeline lists them."""

    rep_id: str
    kind: str
    durations: list[float]  # seconds
    tolerance: float  # seconds: one frame of this representation


def iso_duration(text: str | None) -> float | None:
    """Seconds of an ISO 8601 duration such as PT1M4.5S; None when absent or malformed."""
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?)?", text or "")
    if not text or not match:
        return None
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def format_duration(seconds: float) -> str:
    """An ISO 8601 duration rounded up to the millisecond (a maximum must never come out smaller)."""
    return f"PT{math.ceil(round(seconds * 1000, 6)) / 1000:.3f}S"


def _frame_seconds(aset: ET.Element, rep: ET.Element) -> float:
    rate = rep.get("frameRate") or aset.get("frameRate")
    if rate:
        num, _, den = rate.partition("/")
        return float(den or 1) / float(num)
    sampling = rep.get("audioSamplingRate") or aset.get("audioSamplingRate")
    if sampling:
        return AUDIO_FRAME_SAMPLES / float(sampling)
    return DEFAULT_TOLERANCE


def timelines(root: ET.Element) -> list[Timeline]:
    """Every representation's segment durations."""
    found: list[Timeline] = []
    for aset in root.iterfind(".//mpd:AdaptationSet", NS):
        for rep in aset.iterfind("mpd:Representation", NS):
            template = rep.find("mpd:SegmentTemplate", NS)
            if template is None:
                template = aset.find("mpd:SegmentTemplate", NS)
            durations: list[float] = []
            if template is not None:
                timescale = int(template.get("timescale") or 1)
                for s in template.iterfind("mpd:SegmentTimeline/mpd:S", NS):
                    durations += [int(s.get("d") or 0) / timescale] * (int(s.get("r") or 0) + 1)
            kind = aset.get("contentType") or rep.get("mimeType", "").split("/")[0]
            found.append(Timeline(rep.get("id") or "", kind, durations, _frame_seconds(aset, rep)))
    return found


def _single_init(aset: ET.Element) -> bool:
    """True when one initialization segment serves every representation of the adaptation set."""
    inits = set()
    for rep in aset.iterfind("mpd:Representation", NS):
        template = rep.find("mpd:SegmentTemplate", NS)
        if template is None:
            template = aset.find("mpd:SegmentTemplate", NS)
        init = template.get("initialization") if template is not None else None
        if init is None or "$RepresentationID$" in init or "$Bandwidth$" in init:
            return False
        inits.add(init)
    return len(inits) == 1


def mpd_problems(text: str) -> list[str]:
    """Every rule above that the MPD `text` breaks, in words; empty when it conforms."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        return [f"not well-formed XML: {exc}"]
    problems: list[str] = []
    profiles = [p.strip() for p in (root.get("profiles") or "").split(",") if p.strip()]
    if not profiles:
        problems.append("no profiles are declared")
    elif not set(profiles) & PROFILES:
        problems.append(f"none of the profiles {profiles} is a DASH profile")
    total = iso_duration(root.get("mediaPresentationDuration"))
    longest = iso_duration(root.get("maxSegmentDuration"))
    if total is None:
        problems.append("mediaPresentationDuration is missing")
    for timeline in timelines(root):
        where = f"representation {timeline.rep_id}"
        if not timeline.durations:
            problems.append(f"{where} lists no segments")
            continue
        summed = sum(timeline.durations)
        if total is not None and abs(summed - total) > timeline.tolerance + 1e-6:
            problems.append(f"{where}: its segments last {summed:.4f} s, the presentation {total:.4f} s")
        if longest is not None and max(timeline.durations) > longest + 1e-6:
            problems.append(
                f"{where}: a segment lasts {max(timeline.durations):.4f} s, above maxSegmentDuration "
                f"{longest:.4f} s"
            )
    for aset in root.iterfind(".//mpd:AdaptationSet", NS):
        if aset.get("bitstreamSwitching") == "true" and not _single_init(aset):
            problems.append(
                f"adaptation set {aset.get('id')} declares bitstreamSwitching but each representation "
                "has its own initialization segment"
            )
    return problems


def fix_mpd(text: str) -> str:
    """maxSegmentDuration from the longest real segment; bitstreamSwitching dropped where untrue."""
    root = ET.fromstring(text)
    longest = max((d for t in timelines(root) for d in t.durations), default=None)
    if longest is not None:
        value = format_duration(longest)
        if re.search(r'\smaxSegmentDuration="[^"]*"', text):
            text = re.sub(r'(\smaxSegmentDuration=")[^"]*(")', rf"\g<1>{value}\g<2>", text, count=1)
        else:
            text = re.sub(r"(<MPD\b)", rf'\g<1> maxSegmentDuration="{value}"', text, count=1)
    single = {aset.get("id") for aset in root.iterfind(".//mpd:AdaptationSet", NS) if _single_init(aset)}

    def switching(match: re.Match[str]) -> str:
        tag = match.group(0)
        set_id = re.search(r'\sid="([^"]*)"', tag)
        if set_id and set_id.group(1) in single:
            return tag
        return re.sub(r'\sbitstreamSwitching="true"', "", tag)

    return re.sub(r"<AdaptationSet\b[^>]*>", switching, text)
