"""Downloads of job outputs (pure): which stored file a download path names, and signed share links.

A share link is a URL prefix `/share/<token>/` standing for one output of one job until a time. The token
is `<payload>.<mac>`: the payload names the job, the output and the expiry (base64url of compact JSON), the
MAC is HMAC-SHA256 over it with a key derived from FRAMEFLEET_SECRET_KEY. Anyone holding the URL may read
the files under that output (an HLS or DASH ladder's playlists and segments resolve relative to it); no
one can widen it to another output or extend it without the server's secret. Rotating the secret (the
newest passphrase first) keeps links signed with an older listed passphrase valid until they expire.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass

from framefleet.storage import join_uri
from framefleet.storage.base import StorageError
from framefleet.tenancy.secrets import passphrases

# Binds derived keys to this use: a share MAC can never be replayed as another HMAC of the same secret.
_KEY_LABEL = b"framefleet share links v1"
# Kinds of output rows whose URI is a folder (images, pictures) or whose files live beside it (a
# manifest's playlists and segments); only these may be read below their name.
FOLDER_KINDS = frozenset({"manifest", "images", "thumbnails", "sprites"})


class ShareError(ValueError):
    """A share token that is malformed, forged or expired (always answered 404: nothing to learn)."""


@dataclass(frozen=True)
class Share:
    job_id: str
    output: str
    expires: int  # unix seconds


@dataclass(frozen=True)
class OutputEntry:
    """What downloads need of an output row: its name, kind and stored URI."""

    name: str
    kind: str
    uri: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(passphrase: str, payload: str) -> bytes:
    key = hmac.new(passphrase.encode(), _KEY_LABEL, hashlib.sha256).digest()
    return hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest()


def sign_share(share: Share, *, secret_key: str) -> str:
    """The token for `share`, signed with the newest configured passphrase."""
    body = json.dumps({"j": share.job_id, "n": share.output, "e": share.expires}, separators=(",", ":"))
    payload = _b64(body.encode())
    return f"{payload}.{_b64(_mac(passphrases(secret_key)[0], payload))}"


def open_share(token: str, *, secret_key: str, now: float) -> Share:
    """The share a token stands for; ShareError when it is malformed, signed by no listed key, or expired."""
    payload, dot, mac_text = token.partition(".")
    if not dot or not payload or not mac_text or len(token) > 1024:
        raise ShareError("malformed share token")
    try:
        mac = _unb64(mac_text)
        # Any listed passphrase verifies, so rotating the secret does not break links already handed out.
        if not any(hmac.compare_digest(mac, _mac(p, payload)) for p in passphrases(secret_key)):
            raise ShareError("share token signature does not match")
        fields = json.loads(_unb64(payload))
        share = Share(job_id=str(fields["j"]), output=str(fields["n"]), expires=int(fields["e"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ShareError(f"malformed share token ({exc})") from None
    if share.expires <= now:
        raise ShareError("share link expired")
    return share


def output_file_uri(outputs: Sequence[OutputEntry], name: str, path: str | None) -> str:
    """The stored URI of output `name` (path None) or of the file `path` below it; LookupError when none.

    `path` is only allowed under a folder output or beside a manifest (its ladder's playlists and
    segments); every segment is checked (no '..', no empty segment), so it cannot leave that folder.
    """
    entry = next((o for o in outputs if o.name == name), None)
    if entry is None:
        raise LookupError(f"the job has no output named {name!r}")
    folder = entry.uri.endswith("/")
    if path is None:
        if folder:
            raise LookupError(f"output {name!r} is a folder; name a file in it: outputs/{name}/<file>")
        return entry.uri
    if entry.kind not in FOLDER_KINDS:
        raise LookupError(f"output {name!r} is a single file; it has no files below it")
    base = entry.uri if folder else entry.uri.rsplit("/", 1)[0] + "/"
    try:
        return join_uri(base, path)
    except StorageError as exc:
        raise LookupError(exc.message) from None
