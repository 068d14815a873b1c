"""A short-lived, per-process memory of authenticated keys, so a busy client costs no key lookup per request.

Both answers are kept for at most `ttl_seconds`: a known key's principal (so a revoked key stops working
within that time) and the fact that a key is unknown (so a client retrying a bad key, or guessing, costs no
database lookup per request either). Each kind is bounded to `max_entries`, so guessing fills no more memory.
"""

from __future__ import annotations

import threading
import time

from framefleet.keys import Principal, hash_key

DEFAULT_TTL_SECONDS = 5.0
MAX_ENTRIES = 10_000


class KeyCache:
    """Principals by key hash, each kept for `ttl_seconds` (0 disables the cache)."""

    def __init__(self, ttl_seconds: float = DEFAULT_TTL_SECONDS, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._unknown: dict[str, float] = {}
        self._lock = threading.Lock()

    def get(self, raw_key: str) -> Principal | None:
        """The cached principal for a raw key, if still fresh."""
        if self.ttl_seconds <= 0:
            return None
        entry = self._entries.get(hash_key(raw_key))
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def put(self, raw_key: str, principal: Principal) -> None:
        """Remember a key that just authenticated."""
        if self.ttl_seconds <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.max_entries:
                # Rare (that many live keys in one TTL window): start over rather than track recency.
                self._entries.clear()
            self._entries[hash_key(raw_key)] = (principal, time.monotonic() + self.ttl_seconds)

    def is_unknown(self, raw_key: str) -> bool:
        """Whether this key was looked up and found unknown (or revoked) within the TTL."""
        if self.ttl_seconds <= 0:
            return False
        until = self._unknown.get(hash_key(raw_key))
        return until is not None and until >= time.monotonic()

    def put_unknown(self, raw_key: str) -> None:
        """Remember a key that just failed to authenticate."""
        if self.ttl_seconds <= 0:
            return
        with self._lock:
            if len(self._unknown) >= self.max_entries:
                self._unknown.clear()
            self._unknown[hash_key(raw_key)] = time.monotonic() + self.ttl_seconds

    def clear(self) -> None:
        """Forget every key (after revoking one, to apply it at once in this process)."""
        with self._lock:
            self._entries.clear()
            self._unknown.clear()
