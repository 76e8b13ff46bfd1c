"""Erasure of users from the embedding tables (``seqrep forget``, with ``pipelines/etl/erase.py``).

Every version's user table holding one of the users is rewritten without their rows (one swap
per partition, in the caller's run), and the version's inference manifest and the day's publish
record count what is left, with an ``erased`` entry. Item tables and indexes hold items only.
The weights that learned from the users are replaced by the full retrain that follows
(``pipelines/nightly/steps.py``); user vectors are computed from histories at inference, so the
next inference cannot bring a user back whose history is gone.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from pipelines.core import warehouse as layout
from pipelines.core.warehouse import Warehouse


def erase_user_embeddings(wh: Warehouse, stored_ids: list[str], request: str) -> dict[str, int]:
    """Remove the users from every user table of ``wh`` (in its run); returns rows removed per
    partition (``embeddings/users/model=M/dt=D/version=V``)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    ids = pa.array(sorted(set(stored_ids)), pa.string())
    removed: dict[str, int] = {}
    for folder in sorted(wh.table(layout.USER_EMBEDDINGS).glob("model=*/dt=*/version=*")):
        files = sorted(f for f in folder.glob("*.parquet") if not f.name.startswith((".", "_")))
        if not files:
            continue
        table = pa.concat_tables([pq.ParquetFile(f).read() for f in files])  # no columns from the path
        hit = pc.is_in(table.column("user_id"), value_set=ids)
        n = pc.sum(hit).as_py() or 0
        if not n:
            continue
        kept = table.filter(pc.invert(hit))
        wh.write_folder(folder, lambda staged, kept=kept: pq.write_table(kept, staged / files[0].name,
                                                                          row_group_size=65536))
        rel = str(folder.relative_to(wh.root))
        removed[rel] = n
        _recount(wh, folder, n, request)
    return removed


def _recount(wh: Warehouse, folder: Path, n: int, request: str) -> None:
    """The inference manifest and publish record of the partition: ``n`` users fewer."""
    method = folder.parent.parent.name.removeprefix("model=")
    day = date.fromisoformat(folder.parent.name.removeprefix("dt="))
    version = folder.name.removeprefix("version=")
    key = wh.infer_key(method, day, version)
    entry = {"request": request, "rows": {"users": n}}
    manifest = wh.read_manifest("infer", key)
    if manifest is not None:
        manifest["users"] -= n
        manifest.setdefault("erased", []).append(entry)
        wh.write_manifest("infer", key, manifest)
    record = wh.publish_record(method, day)
    if record is not None and record.get("model_version") == version:
        record["users"] -= n
        record.setdefault("erased", []).append(entry)
        wh.write_publish_record(method, day, record)
