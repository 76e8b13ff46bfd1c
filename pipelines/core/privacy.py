"""Pseudonymous user ids: a keyed hash in place of every user id the warehouse stores.

With ``privacy.pseudonymize`` on, ingest stores ``pseudonym(key, id)`` instead of a user's id:

    pseudonym(K, id) = hex(HMAC-SHA256(K, utf8(id)))[:32]

128 bits of the keyed hash (RFC 2104), so equal ids stay equal (sessions, sequences and joins
are unchanged) while nobody without ``K`` can tell which person a row is, nor test a guess: an
unkeyed hash of a short id (a number, an email) is reversed by trying every candidate. The key
comes from the environment variable ``privacy.key_env`` (default ``SEQREP_PSEUDONYM_KEY``) or
the file ``privacy.key_file``, and is never written to the warehouse or a log.

The warehouse says that it is pseudonymous in ``_privacy/pseudonyms.json``: since when, where
its key is read from, and a check value ``HMAC(K, "seqrep key check")`` that tells a wrong key
from the right one without revealing either. Queries read that record: given a user's id, they
look up its pseudonym; without the key, they stop with a message saying where to put it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any, Callable

from pipelines.core.errors import ConfigError, UsageError

#: Hex digits kept of the HMAC: 128 bits, collision-free for any realistic number of users.
PSEUDONYM_HEX = 32
#: The warehouse's record that it stores pseudonyms (module docstring).
RECORD = "_privacy/pseudonyms.json"
#: Shortest key accepted: a key an attacker can enumerate protects nothing.
MIN_KEY_BYTES = 16
_CHECK = b"seqrep key check"


def pseudonym(key: bytes, user_id: str) -> str:
    """The stored id of ``user_id`` under ``key`` (module docstring)."""
    return hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]


def pseudonymizer(key: bytes) -> Callable[[str | None], str | None]:
    """``pseudonym`` bound to a key, passing None through (a null id stays null: clean quarantines it)."""
    return lambda v: None if v is None else pseudonym(key, v)


def key_check(key: bytes) -> str:
    """A value that identifies the key without revealing it (HMAC of a constant)."""
    return hmac.new(key, _CHECK, hashlib.sha256).hexdigest()[:16]


def read_key(key_env: str, key_file: Path | str | None) -> bytes | None:
    """The key from the environment variable ``key_env``, else from ``key_file`` (its bytes, one
    trailing newline stripped); None when neither is set. Too short a key is an error."""
    raw: bytes | None = None
    where = ""
    if os.environ.get(key_env):
        raw, where = os.environ[key_env].encode("utf-8"), f"environment variable {key_env}"
    elif key_file:
        path = Path(key_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"privacy.key_file {path}: not found")
        raw, where = path.read_bytes().removesuffix(b"\n"), f"key file {path}"
    if raw is not None and len(raw) < MIN_KEY_BYTES:
        raise ConfigError(f"the pseudonym key in {where} has {len(raw)} bytes; use at least {MIN_KEY_BYTES} "
                          "random bytes (e.g. `openssl rand -hex 32`)")
    return raw


def require_key(key_env: str, key_file: Path | str | None, *, why: str) -> bytes:
    """``read_key``, or a clear error naming where the key is looked for."""
    key = read_key(key_env, key_file)
    if key is None:
        where = f"the environment variable {key_env}" + (f" or the file {key_file}" if key_file else "")
        raise UsageError(f"{why}: user ids are pseudonymized with a secret key, and none was found in {where}")
    return key


def read_record(root: Path) -> dict[str, Any] | None:
    """The warehouse's pseudonym record, or None for a warehouse of plain ids."""
    path = Path(root) / RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def record_for(key: bytes, key_env: str, key_file: Path | str | None, since: str) -> dict[str, Any]:
    """The record ingest writes the first time (no key, only where it is read from and its check)."""
    return {"pseudonymize": True, "hmac": "sha256", "hex_digits": PSEUDONYM_HEX, "key_check": key_check(key),
            "key_env": key_env, "key_file": str(key_file) if key_file else None, "since": since}


def check_key(record: dict[str, Any], key: bytes, *, who: str) -> None:
    """Stop when ``key`` is not the key the warehouse was pseudonymized with."""
    if not hmac.compare_digest(record["key_check"], key_check(key)):
        raise ConfigError(f"{who}: the pseudonym key given is not the one this warehouse's ids were made with "
                          f"(its check value differs); ids hashed with it would match no one")


class Pseudonyms:
    """How a reader of a warehouse turns a user's id into the id stored: itself for a warehouse
    of plain ids, its pseudonym for a pseudonymous one (the key read as the record says)."""

    def __init__(self, root: Path, key: bytes | None = None):
        self.record = read_record(root)
        self._key = key
        self._checked = False

    @property
    def on(self) -> bool:
        return self.record is not None

    def stored(self, user_id: str, *, who: str = "query") -> str:
        """The id under which the warehouse keeps ``user_id``."""
        if self.record is None:
            return user_id
        if not self._checked:
            if self._key is None:
                self._key = require_key(self.record["key_env"], self.record.get("key_file"), why=who)
            check_key(self.record, self._key, who=who)
            self._checked = True
        return pseudonym(self._key, user_id)


# -- erasure records (``seqrep forget``, ``pipelines/nightly/forget.py``) ---------------------------
#: One audit record per erasure request: ``_privacy/erasures/<request>.json``.
ERASURES = "_privacy/erasures"
#: Hashed before an id (``id_hash``): these hashes are of nothing else.
ERASED_PREFIX = "seqrep-erased:"


def id_hash(stored_id: str) -> str:
    """What an erasure record keeps of a user: a hash of the id as stored (the pseudonym in a
    pseudonymous warehouse, where it cannot be reversed without the key), never the id. Ingest
    drops later events of an id with this hash."""
    return hashlib.sha256(f"{ERASED_PREFIX}{stored_id}".encode("utf-8")).hexdigest()


def erasure_records(root: Path) -> list[dict[str, Any]]:
    """Every erasure record of the warehouse (completed requests), oldest first."""
    folder = Path(root) / ERASURES
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    return [r for r in records if r.get("status") == "completed"]


def erased_hashes(root: Path) -> set[str]:
    """The id hashes of every user erased from the warehouse."""
    return {h for r in erasure_records(root) for h in r["id_hashes"]}
