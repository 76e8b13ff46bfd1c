"""``seqrep forget``: erase users from every table the pipeline derived, with an audit trail.

1. The request is recorded first (``_privacy/requests/<request>.json``: when, why, a hash of
   each id, status ``pending``), so a request cut short is known and a rerun completes it.
2. One run (``pipelines/core/runs.py``) under the ETL's writer lock and every method's: the ETL's
   tables (``pipelines/etl/erase.py``), the embedding tables (``pipelines/modeling/erase.py``),
   and any JSON or text file that names a user (a gate's sample rows, a task's error) with the id
   replaced by ``~erased``; then the audit record ``_privacy/erasures/<request>.json`` (a hash of
   each id, the partitions rewritten, rows removed per table, bytes written, start and end).
   Everything becomes visible in one commit: a kill leaves the old warehouse or the new one.
3. The ``erasure`` gate (``pipelines/gates/erasure.py``) scans the committed warehouse: neither
   the id nor its pseudonym may occur anywhere but in the audit record's hash.

Afterwards ingest drops the users' new events (counted in its manifest, ``rows_erased``), and
each published method is fully retrained within ``privacy.retrain_within_days`` of the erasure
(``pipelines/nightly/steps.py``). A rerun for users already erased finds nothing and writes
nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from pipelines.core import locks, privacy
from pipelines.core import warehouse as layout
from pipelines.core.config import Config
from pipelines.core.errors import UsageError
from pipelines.core.runs import transaction
from pipelines.core.warehouse import Warehouse
from pipelines.gates import erasure
from pipelines.gates.check import record_gate, run_frames

REQUESTS = "_privacy/requests"
ERASED_TEXT = "~erased"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def request_id(hashes: list[str]) -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{hashlib.sha256(''.join(hashes).encode()).hexdigest()[:8]}"


def forget(cfg: Config, user_ids: list[str], reason: str, *, gate: bool = True,
           echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Erase ``user_ids`` (as the product knows them; a pseudonymous warehouse's key hashes them)
    from the warehouse of ``cfg``; returns the audit record (module docstring). ``gate=False``
    leaves the scan to a separate step (``verify``: the erasure DAG's ``gate_erasure``)."""
    from pipelines.etl.erase import erase
    from pipelines.etl.spark import get_spark
    from pipelines.modeling.erase import erase_user_embeddings

    if not user_ids:
        raise UsageError("forget: no user id given (--user ID or --user-file FILE)")
    if not reason.strip():
        raise UsageError("forget: say why (--reason), e.g. the request's reference")
    wh = Warehouse(cfg.warehouse)
    names = privacy.Pseudonyms(wh.root, privacy.read_key(cfg.privacy.key_env, cfg.privacy.key_file))
    stored, terms = _terms(names, user_ids)
    hashes = sorted(privacy.id_hash(s) for s in stored)
    pending = _pending(wh, hashes)  # the same request cut short before: completed under its name
    request = pending["request"] if pending else request_id(hashes)
    started = pending["requested"] if pending else _now()
    wh.write_json(wh.table(f"{REQUESTS}/{request}.json"), {
        "request": request, "requested": started, "reason": reason, "users": len(stored),
        "id_hashes": hashes, "status": "pending"})
    echo(f"forget {request}: {len(stored)} user(s) ({reason})")
    t0 = time.perf_counter()
    with ExitStack() as stack:
        for method in _methods(wh):  # no model step writes while the tables are rewritten
            stack.enter_context(locks.writer(wh.root, f"model={method}", f"seqrep forget {request}"))
        run = stack.enter_context(transaction(wh, "etl", f"seqrep forget {request}"))
        done = erase(get_spark(cfg.spark), cfg, stored, run, request)
        embeddings = erase_user_embeddings(run, stored, request)
        scrubbed = _scrub(run, terms)
        partitions = [*done.partitions, *embeddings]
        record = {
            "request": request, "reason": reason, "requested": started, "completed": _now(), "status": "completed",
            "users": len(stored), "id_hashes": hashes, "pseudonymous": names.on,
            "partitions_rewritten": len(partitions), "rows_removed": {**done.total, layout.USER_EMBEDDINGS: sum(embeddings.values())},
            "vocabulary_tombstones": done.tombstones, "files_scrubbed": scrubbed,
            "bytes_written": _bytes(run, partitions), "partitions": partitions,
            "seconds": round(time.perf_counter() - t0, 2),
        }
        if not partitions and not scrubbed:
            stack.close()  # nothing to rewrite: the users are not in the warehouse (any more)
            wh.table(f"{REQUESTS}/{request}.json").unlink()
            echo(f"forget {request}: nothing holds these users; nothing written")
            return {**record, "partitions_rewritten": 0, "noop": True}
        run.write_json(run.table(f"{privacy.ERASURES}/{request}.json"), record)
    wh.table(f"{REQUESTS}/{request}.json").unlink()  # the audit record replaces it
    echo(f"forget {request}: {len(partitions)} partitions rewritten ({record['bytes_written']:,} bytes), rows removed "
         f"{record['rows_removed']}, {len(scrubbed)} file(s) scrubbed, in {record['seconds']:.1f}s")
    if gate:
        check(wh, request, terms, echo)
    return record


def verify(cfg: Config, user_ids: list[str], *, echo: Callable[[str], None] = print) -> None:
    """The erasure gate for users already erased: the warehouse's last request for exactly them."""
    wh = Warehouse(cfg.warehouse)
    names = privacy.Pseudonyms(wh.root, privacy.read_key(cfg.privacy.key_env, cfg.privacy.key_file))
    stored, terms = _terms(names, user_ids)
    hashes = sorted(privacy.id_hash(s) for s in stored)
    done = [r["request"] for r in privacy.erasure_records(wh.root) if set(hashes) <= set(r["id_hashes"])]
    if not done:
        raise UsageError(f"forget --verify: no completed erasure of these {len(stored)} user(s) in {wh.root}")
    check(wh, done[-1], terms, echo)


def audit(cfg: Config) -> list[dict[str, Any]]:
    """Every erasure record with, per published method, the first version whose weights began
    after it (a full retrain that never saw the users: ``full_at`` of its publish record), or
    ``None`` while that retrain is still to come."""
    wh = Warehouse(cfg.warehouse)
    out = []
    for record in privacy.erasure_records(wh.root):
        retrained: dict[str, Any] = {}
        for method in wh.published_methods():
            first = None
            for day in wh.published_days(method):
                rec = wh.publish_record(method, day) or {}
                if rec.get("full_at") and rec["full_at"] > record["completed"]:
                    first = {"version": rec["model_version"], "trained_at": rec["full_at"], "published_for": str(day)}
                    break
            retrained[method] = first
        out.append({k: v for k, v in record.items() if k != "partitions"} | {"retrained": retrained})
    return out


def _terms(names: privacy.Pseudonyms, user_ids: list[str]) -> tuple[list[str], dict[str, str]]:
    """The stored ids, and what the scan looks for: each stored id, and in a pseudonymous
    warehouse each plain id too (kinds only are ever recorded, never the values)."""
    stored = sorted({names.stored(u, who="forget") for u in user_ids})
    terms = {f"user{i}": s for i, s in enumerate(stored)}
    if names.on:
        terms |= {f"plain_id{i}": u for i, u in enumerate(sorted(set(user_ids)))}
    return stored, terms


def _pending(wh: Warehouse, hashes: list[str]) -> dict[str, Any] | None:
    """A recorded request for exactly these users that never completed."""
    for path in sorted(wh.table(REQUESTS).glob("*.json")):
        record = json.loads(path.read_text())
        if record["id_hashes"] == hashes:
            return record
    return None


def check(wh: Warehouse, request: str, terms: dict[str, str], echo: Callable[[str], None] = print) -> None:
    """The erasure gate on the committed warehouse; raises ``GateFailed`` naming where a trace is."""
    hits: list[dict[str, Any]] = []

    def frames():
        out = erasure.frames(wh, terms)
        hits.extend(out[0].df.to_dict("records"))
        return out

    report = run_frames("erasure", [datetime.now(timezone.utc).date()], frames)
    for h in hits[:20]:
        echo(f"gate erasure {request}: a trace of {h['term']} in {h['file']} ({h['column']})")
    record_gate(wh, report, f"request={request}")
    echo(f"gate erasure {request}: PASSED — no trace of the user(s) in {wh.root}")


def _methods(wh: Warehouse) -> list[str]:
    """Methods with models or embedding tables in the warehouse (their writer locks)."""
    models = {p.name for p in wh.table(layout.MODELS).glob("*") if p.is_dir()}
    tables = {p.name.removeprefix("model=").split(".", 1)[0] for p in wh.table(layout.USER_EMBEDDINGS).glob("model=*")}
    return sorted(models | tables)


def _bytes(wh: Warehouse, partitions: list[str]) -> int:
    """Bytes of the rewritten partitions as the run staged them."""
    total = 0
    for rel in partitions:
        folder = wh.current(wh.table(rel))
        total += sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder.exists() else 0
    return total


def _scrub(wh: Warehouse, terms: dict[str, str]) -> list[str]:
    """JSON and text files that name a user, rewritten with ``~erased`` in its place (in the run)."""
    values = set(terms.values())
    touched = []
    for hit in sorted({h["file"] for h in erasure.scan(wh.root, terms, parquet=False)}):
        path = wh.table(hit)
        text = wh.current(path).read_text()
        if path.suffix == ".json":
            new = json.dumps(_replace(json.loads(text), values), indent=2, sort_keys=True, default=str) + "\n"
        else:
            new = text
        for v in filter(erasure.searchable, values):  # tokens in free text (a JSON file's messages too)
            new = erasure.token(v).sub(ERASED_TEXT, new)
        if new != text:
            wh.write_text(path, new)
            touched.append(hit)
    return sorted(touched)


def _replace(obj: Any, values: set[str]) -> Any:
    if isinstance(obj, dict):
        return {(ERASED_TEXT if k in values else k): _replace(v, values) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_replace(v, values) for v in obj]
    return ERASED_TEXT if isinstance(obj, str) and obj in values else obj


def read_user_file(path: str | Path) -> list[str]:
    """One id per line (blank lines and ``#`` comments skipped)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"forget: --user-file {p}: not found")
    return [line.strip() for line in p.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
