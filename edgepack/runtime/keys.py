"""Scoring keys at run time: from a JSON file re-read when it changes, or from environment variables.

Keys are compared with ``hmac.compare_digest`` so the time taken does not reveal how much of a key matched.
"""

from __future__ import annotations

import hmac
import json
import os
import threading


class KeyRing:
    """The current keys (``primary``, ``secondary``, optional ``master``)."""

    def __init__(self, path: str | None = None, env: dict[str, str] | None = None) -> None:
        env = dict(os.environ if env is None else env)
        self._path = path if path is not None else env.get("EDGEPACK_KEYS_FILE")
        self._static = {name: env[var] for name, var in (("primary", "EDGEPACK_PRIMARY_KEY"),
                                                           ("secondary", "EDGEPACK_SECONDARY_KEY"),
                                                           ("master", "EDGEPACK_MASTER_KEY")) if env.get(var)}
        self._keys: dict[str, str] = {}
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def _reload(self) -> None:
        if not self._path:
            return
        try:
            st = os.stat(self._path)
        except OSError:
            self._keys, self._stamp = {}, None
            return
        stamp = (st.st_mtime_ns, st.st_ino)
        if stamp == self._stamp:
            return
        with self._lock:
            try:
                with open(self._path, encoding="utf-8") as f:
                    data = json.load(f)
            except (OSError, ValueError):
                return  # a half-written file is retried on the next request; the old keys stay in force
            # A file that is not a mapping of names to keys holds no key: every request is refused (401), none
            # is dropped.
            self._keys = {k: v for k, v in data.items() if isinstance(v, str) and v} if isinstance(data, dict) else {}
            self._stamp = stamp

    def keys(self) -> dict[str, str]:
        """The keys in force now."""
        self._reload()
        return {**self._static, **self._keys}

    def configured(self) -> bool:
        """True when at least one key exists."""
        return bool(self.keys())

    def matches(self, presented: str | None, names: tuple[str, ...]) -> bool:
        """True when ``presented`` equals one of the named keys (every key is compared, in constant time)."""
        if not presented:
            return False
        given = presented.encode()
        found = False
        for name, key in self.keys().items():
            if name in names and hmac.compare_digest(given, key.encode()):
                found = True
        return found
