"""Publishing an attempt's pieces: what lives only in the attempt's folder is moved into place, not copied."""

from __future__ import annotations

from pathlib import Path

from framefleet.config import Settings
from framefleet.media.results import Piece, Results
from framefleet.storage.namespace import job_output_base, namespace_for
from framefleet.worker.pipeline import _publish


def test_pieces_of_the_attempts_folder_are_moved_once_and_others_copied(tmp_path: Path) -> None:
    settings = (
        Settings(  # every storage setting given: FRAMEFLEET_* variables of other tests must not leak in
            data_dir=tmp_path,
            storage_roots=[tmp_path / "media"],
            output_root="",
            s3_roots=[],
            shared_storage=[],
            shared_storage_writable=[],
        )
    )
    namespace = namespace_for(settings, "acme")
    base = job_output_base(settings, "acme", "job-1")
    workdir = tmp_path / "work" / "job-1" / "attempt-1"
    (workdir / "out").mkdir(parents=True)
    video, poster = workdir / "out" / "video.ts", workdir / "out" / "poster.jpg"
    video.write_bytes(b"encoded")
    poster.write_bytes(b"picture")
    elsewhere = tmp_path / "media" / "tenants" / "acme" / "intro.ts"
    elsewhere.parent.mkdir(parents=True)
    elsewhere.write_bytes(b"not ours to consume")
    results = Results(
        pieces=[
            Piece(video, f"{base}/video.ts", replace=True),
            # One local file put at two names: it must still be there for the second put.
            Piece(poster, f"{base}/poster.jpg", replace=True),
            Piece(poster, f"{base}/cover.jpg", replace=True, late=True),
            Piece(elsewhere, f"{base}/intro.ts", replace=True),
        ]
    )

    published = _publish("job-1", results, namespace, workdir=workdir)

    out = tmp_path / "media" / "outputs" / "tenants" / "acme" / "job-1"
    contents = {
        name: (out / name).read_bytes() for name in ("video.ts", "poster.jpg", "cover.jpg", "intro.ts")
    }
    assert contents == {
        "video.ts": b"encoded",
        "poster.jpg": b"picture",
        "cover.jpg": b"picture",
        "intro.ts": b"not ours to consume",
    }
    assert not video.exists(), "the attempt's own piece is renamed into place, not copied"
    assert poster.exists() and elsewhere.exists(), "shared or outside pieces are copied and left"
    assert sorted(o.size_bytes for o in published.objects) == sorted(len(v) for v in contents.values())
