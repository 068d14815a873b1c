"""The input sound tracks a job draws from: operations.audio_track's (every output's default), then each
output's `audio_tracks` and each audio rendition's `track`, in spec order, one source per distinct track
(or mono pair). The encode and the loudness pass both number sources this way, so a measurement is
applied to the sound it was taken on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from framefleet.core.ladders import AudioRenditionSpec
from framefleet.core.operations import AudioTrackSpec
from framefleet.core.spec import JobSpec, OutputSpec
from framefleet.media.probe import AudioInfo, MediaInfo, pick_audio_track, unused_audio_tracks


@dataclass(frozen=True)
class SoundSource:
    """One input track (or mono pair) that sound branches start from; `ordinal` is its place in the job."""

    ordinal: int
    track: AudioInfo

    def inputs(self) -> list[int]:
        """The input audio streams it reads."""
        return [self.track.index] + ([self.track.paired] if self.track.paired is not None else [])

    def head(self) -> tuple[list[str], str]:
        """Chains that make the source's sound and the label (or input stream) they end in.

        A pair is joined into one stereo stream, left then right, each pinned to mono at the left track's
        rate first (join takes one rate and format), so everything after it sees a stereo track.
        """
        if self.track.paired is None:
            return [], f"0:a:{self.track.index}"
        rate = self.track.sample_rate
        label = f"apair{self.ordinal}"
        sides = []
        for side, index in (("l", self.track.index), ("r", self.track.paired)):
            sides.append(f"[0:a:{index}]aresample={rate},aformat=channel_layouts=mono[{label}{side}]")
        join = f"[{label}l][{label}r]join=inputs=2:channel_layout=stereo:map=0.0-FL|1.0-FR[{label}]"
        return [*sides, join], label


class SoundSources:
    """The job's sound sources, numbered in spec order; picks the input cannot meet are refused."""

    def __init__(self, spec: JobSpec, info: MediaInfo) -> None:
        self.info = info
        self.sources: list[SoundSource] = []
        ops = spec.operations
        default = ops.audio_track if ops is not None else None
        self.primary = (
            self.pick(default, "operations.audio_track") if info.audio is not None or default else None
        )
        for oindex, output in enumerate(spec.outputs):
            for tindex, track in enumerate(output.audio_tracks or []):
                self.pick(track, f"outputs.{oindex}.audio_tracks.{tindex}")
        for gindex, group in enumerate(spec.groups):
            for aindex, rendition in enumerate(group.audio or []):
                if rendition.track is not None:
                    self.pick(rendition.track, f"groups.{gindex}.audio.{aindex}.track")

    def pick(self, track: AudioTrackSpec | None, where: str) -> SoundSource | None:
        """The source for `track` (None: the default one)."""
        if track is None and self.sources:
            return self.sources[0]
        chosen = pick_audio_track(self.info, track, where)
        if chosen is None:
            return None
        for source in self.sources:
            if (source.track.index, source.track.paired) == (chosen.index, chosen.paired):
                return source
        source = SoundSource(len(self.sources), chosen)
        self.sources.append(source)
        return source

    def for_output(self, output: OutputSpec, oindex: int) -> list[SoundSource]:
        """The sources of an output's sound tracks, in order."""
        picks: list[AudioTrackSpec | None] = [*output.audio_tracks] if output.audio_tracks else [None]
        found = [self.pick(t, f"outputs.{oindex}.audio_tracks.{k}") for k, t in enumerate(picks)]
        return [s for s in found if s is not None]

    def for_rendition(self, rendition: AudioRenditionSpec, where: str) -> SoundSource | None:
        """The source of one audio rendition."""
        return self.pick(rendition.track, where)

    def unused(self) -> list[dict[str, Any]]:
        """The input tracks that no source reads."""
        return unused_audio_tracks(self.info, {i for s in self.sources for i in s.inputs()})
