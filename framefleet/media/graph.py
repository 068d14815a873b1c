"""The filter graph's fan-out: one shared picture (or sound) split into a branch per consumer, and the
branch rewrites for frames that live in GPU memory (scale_cuda for NVENC, a download for the rest)."""

from __future__ import annotations

from dataclasses import dataclass, field

from framefleet.core.spec import PixFmt
from framefleet.media.colour import converts
from framefleet.media.encoders import (
    NVDEC_CODECS,
    Family,
)
from framefleet.media.planning import JobBuilder
from framefleet.media.probe import VideoInfo

# Filters a branch may run before its resize that the display-size reference shares with it.
BEFORE_RESIZE = ("fps=", "hwdownload", "format=")


@dataclass
class Consumer:
    """One branch fed from the shared picture or sound: its filters and where its result goes."""

    key: str
    filters: list[str]
    gif: bool = False
    ref: str | None = None  # label of a reference copy for scoring
    tail: list[str] = field(default_factory=list)  # after the reference split, encoder side (hw upload)
    ref_tail: list[str] = field(default_factory=list)  # reference side (hw download)
    # Set when the stream is scored at display size: the reference is split off before the branch resizes
    # (after an fps change or a download only) and gets these filters instead (the display-size scale).
    ref_filters: list[str] | None = None
    out: str = ""  # filled in: the label the output maps
    # First on the branch, shared by the encoder and the reference (tone mapping an SDR branch of HDR).
    head: list[str] = field(default_factory=list)
    # The branch's encoder keeps the source's HDR10 metadata (mastering display, content light level).
    hdr10: bool = False


def consumer_chains(src: str, consumer: Consumer, label: str) -> tuple[list[str], str]:
    """The chains of one branch from `src`, and the label its output maps."""
    chain = [*consumer.head, *consumer.filters]
    if consumer.gif:
        # One palette per frame: no whole-video buffering, good colours for moving pictures.
        return [
            f"{src}{','.join([*chain, 'split=2'])}[{label}a][{label}b]",
            f"[{label}a]palettegen=stats_mode=single[{label}p]",
            f"[{label}b][{label}p]paletteuse=new=1[{label}]",
        ], label
    if consumer.ref is not None:
        at = len(chain)
        if consumer.ref_filters is not None:
            at = len(consumer.head) + next(
                (i for i, f in enumerate(consumer.filters) if not f.startswith(BEFORE_RESIZE)),
                len(consumer.filters),
            )
        enc_chain = [*chain[at:], *consumer.tail]
        ref_chain = [*consumer.ref_tail, *(consumer.ref_filters or [])]
        enc = f"{label}raw" if enc_chain else label
        ref = f"{consumer.ref}raw" if ref_chain else consumer.ref
        chains = [f"{src}{','.join([*chain[:at], 'split=2'])}[{enc}][{ref}]"]
        if enc_chain:
            chains.append(f"[{enc}]{','.join(enc_chain)}[{label}]")
        if ref_chain:
            chains.append(f"[{ref}]{','.join(ref_chain)}[{consumer.ref}]")
        return chains, label
    chain += consumer.tail
    if chain:
        return [f"{src}{','.join(chain)}[{label}]"], label
    return [], src.strip("[]")  # a split output can be mapped as it is


def fan_out(kind: str, source: str, consumers: list[Consumer], head: list[str]) -> list[str]:
    """Chains feeding each consumer from `source` (after the shared `head` chains)."""
    graph = list(head)
    if not consumers:
        return graph
    needs_graph = bool(head) or any(c.head or c.filters or c.gif or c.ref or c.tail for c in consumers)
    if not needs_graph:
        for consumer in consumers:
            consumer.out = source  # every encoder takes the decoded stream as it is
        return graph
    split = "split" if kind == "v" else "asplit"
    if len(consumers) == 1:
        sources = [f"[{source}]"]
    else:
        names = [f"[{kind}src{c.key}]" for c in consumers]
        graph.append(f"[{source}]{split}={len(consumers)}{''.join(names)}")
        sources = names
    for consumer, src in zip(consumers, sources, strict=True):
        chains, consumer.out = consumer_chains(src, consumer, f"{kind}out{consumer.key}")
        graph += chains
    return graph


def video_graphs(source: str, consumers: list[Consumer], head: list[str]) -> list[list[str]]:
    """The filter graphs feeding the picture's consumers: one, plus one more per extra HDR10 branch.

    ffmpeg hands the stream's HDR10 metadata (mastering display, content light level) to the first output
    of each filter graph only, so the other branches of a split would encode without it: their muxers
    write no `mdcv`/`clli` boxes (MP4) or Colour elements (MKV/WebM), and VP9, which has no place for it in
    its bitstream, loses it altogether. So the first HDR10 branch leads the main graph's split, and every
    other one gets a graph of its own on the same decoded stream (decoded once), repeating the shared
    operations in `head`.
    """
    keeping = [c for c in consumers if c.hdr10]
    if len(keeping) < 2:
        return [fan_out("v", source, consumers, head)]
    rest = [c for c in consumers if not c.hdr10]
    graphs = [fan_out("v", source, [keeping[0], *rest], head)]
    graphs += [fan_out("v", source, [consumer], head) for consumer in keeping[1:]]
    return graphs


def use_gpu_frames(b: JobBuilder, families: list[Family]) -> bool:
    """CUDA decode into GPU memory pays off when NVENC encodes and nothing needs CPU filters first."""
    video = b.info.video
    if b.hardware is None or b.hardware.family is not Family.nvenc or video is None:
        return False
    if Family.nvenc not in families or "cuda" not in b.caps.hwaccels or "scale_cuda" not in b.caps.filters:
        return False
    if video.codec not in NVDEC_CODECS or video.rotation or video.bit_depth > 10:
        return False
    return not (b.pre is not None and b.pre.chains) and not b.branch_tonemap


def gpu_branch(consumer: Consumer, family: Family, width: int, height: int, pix: PixFmt, sw: str) -> None:
    """Rewrite a branch for frames in GPU memory: scale_cuda for NVENC, a download for everything else."""
    # scale_cuda only resizes: a branch that converts range or matrix is scaled on the CPU.
    plain = all(
        f.startswith(("fps=", "setsar=", "setparams=")) or (f.startswith("scale=") and not converts(f))
        for f in consumer.filters
    )
    if family is Family.nvenc and plain:
        fmt = "p010le" if pix is PixFmt.yuv420p10le else "nv12"
        keep = [f for f in consumer.filters if f.startswith("fps=")]
        tags = [
            f for f in consumer.filters if f.startswith("setparams=")
        ]  # metadata only: fine on GPU frames
        consumer.filters = [*keep, f"scale_cuda={width}:{height}:format={fmt}", *tags]
        if consumer.ref is not None:
            consumer.ref_tail = ["hwdownload", f"format={fmt}"]
        return
    consumer.filters = ["hwdownload", f"format={sw}", *consumer.filters]


def sw_format(video: VideoInfo) -> str:
    """The system-memory format NVDEC frames download to."""
    return "p010le" if video.bit_depth > 8 else "nv12"
