"""On-request recommendation latency: ``Query.recommend(user, recent=[...])`` with a 1M-item catalogue.

What a service does for a session in progress: the user's stored history plus the request's
events, encoded by the published SASRec kept in memory (``pipelines/serving/session.py``), then
the HNSW index. The catalogue is the point (search cost grows with it), so the bench publishes a
SASRec version of ``--items`` items into a copy of an ETL'd warehouse (ml-100k: real users and
histories): its first items are the warehouse's own, the rest synthetic ids; weights are the
untrained initial ones (latency does not depend on them). The version is published the way
``seqrep publish`` leaves it (tables, HNSW index built by ``publish_index``, publish record),
without the embeddings gate, which would rightly refuse items that have no events.

Timed, one request at a time after one warm-up request (which loads the model, the histories and
the catalogue; its time is reported apart), over ``--requests`` random users with ``--recent``
random known items each:

- ``recent``: ``Query.recommend(user, method, k=10, recent=[...])``, end to end (read lock,
  publish record, encode, index search, names);
- reference, same script and users: ``Query.recommend(user, method, k=10)`` from the published
  user vector (DuckDB lookups of the vector, the seen items and the names).

Target (issue 23): p99 of ``recent`` under 20 ms on CPU.

Run (after ``seqrep ingest --source movielens`` and ``seqrep etl --all`` into wh-ml):
    python bench/recent.py --warehouse wh-ml --items 1000000 --requests 2000 --record recent-1m
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def publish_large(src: Path, work: Path, n_items: int) -> tuple[str, dict]:
    """A copy of ``src`` with a SASRec version of ``n_items`` items published as of its last day."""
    import pyarrow.parquet as pq

    from models.checkpoint import save_model
    from models.infer import encode_histories, published_vectors
    from models.registry import build, method_config
    from pipelines.core import warehouse as layout
    from pipelines.core.config import load_config
    from pipelines.core.warehouse import Warehouse
    from pipelines.modeling.data import latest_day
    from pipelines.serving.index import publish_index

    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(src, work, ignore=shutil.ignore_patterns("models", "metrics", "metric_segments", "embeddings",
                                                             "_staging", "_locks", "tuning", "comparisons", "stage=publish"))
    wh, day = Warehouse(work), latest_day(work)
    cfg = load_config(None, warehouse=work)
    vocab = pq.read_table(wh.root / layout.VOCAB_ITEMS).to_pydict()
    real = dict(zip(vocab["item_idx"], zip(vocab["item_id"], vocab["domain"])))
    mc = method_config("sasrec")
    seqs = pq.read_table(wh.root / layout.SEQUENCES, columns=["user_idx", "user_id", "item_idx"]).to_pandas()
    seqs = seqs.sort_values("user_idx").groupby("user_idx").tail(1)  # any day's row: latency only
    model = build(mc, n_items, int(seqs.user_idx.max()) + 1).eval()
    version = f"{day}-bench{n_items // 1000}k"
    folder = wh.model_folder("sasrec", version)
    folder.mkdir(parents=True)
    save_model(model, folder)
    (folder / "config.json").write_text(json.dumps({
        "method": "sasrec", "version": version, "day": str(day), "protocol": "loo", "n_items": n_items,
        "n_users": len(seqs), "user_vocab": int(seqs.user_idx.max()) + 1,
        "model": mc.params().model_dump(mode="json"), "train": mc.train.model_dump(mode="json")}))
    users = encode_histories(model, [np.asarray(h, np.int64) for h in seqs.item_idx], seqs.user_idx.to_numpy())
    users, items = published_vectors(model, users)

    write_tables(wh, day, version, real, n_items, seqs, users, items)
    t = time.perf_counter()
    index = publish_index(cfg, "sasrec", day, version, wh)
    build_s = time.perf_counter() - t
    wh.write_publish_record("sasrec", day, {"stage": "publish", "method": "sasrec", "asof": str(day),
                                            "model_version": version, "users": len(seqs), "items": n_items,
                                            "dim": int(items.shape[1]), "index": str(index.relative_to(wh.root))})
    kind = json.loads((index / "index.json").read_text()).get("kind")
    return version, {"day": str(day), "index_kind": kind, "index_build_s": round(build_s, 1),
                     "known_items": sorted(real), "users": seqs.user_id.tolist()}


def write_tables(wh, day, version: str, real: dict, n_items: int, seqs, users: np.ndarray, items: np.ndarray) -> None:
    """The version's user and item tables as ``seqrep infer`` lays them out."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def vectors(v: np.ndarray):
        return pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1), pa.float32()), v.shape[1])

    idx = np.arange(1, n_items + 1)
    ids = [real[i][0] if i in real else f"synthetic-{i}" for i in idx.tolist()]
    doms = [real[i][1] if i in real else "movies" for i in idx.tolist()]
    common = lambda n: {"dim": pa.array([items.shape[1]] * n, pa.int32()), "method": pa.array(["sasrec"] * n),  # noqa: E731
                        "model_version": pa.array([version] * n), "asof": pa.array([day] * n, pa.date32())}
    for kind, cols in (("items", {"domain": pa.array(doms), "item_id": pa.array(ids), "item_idx": pa.array(idx, pa.int32()),
                                  "vector": vectors(items), **common(n_items), "n_events": pa.array(np.zeros(n_items, np.int64))}),
                       ("users", {"user_id": pa.array(seqs.user_id.tolist()), "user_idx": pa.array(seqs.user_idx, pa.int32()),
                                  "vector": vectors(users), **common(len(seqs)), "n_events": pa.array(np.zeros(len(seqs), np.int64)),
                                  "fold_in": pa.array(np.zeros(len(seqs), bool))})):
        target = wh.embeddings(kind, "sasrec", day, version)
        target.mkdir(parents=True)
        pq.write_table(pa.table(cols), target / "part-0.parquet", row_group_size=65536)


def timed(fn, calls: list) -> list[float]:
    out = []
    for args in calls:
        t = time.perf_counter()
        fn(*args)
        out.append((time.perf_counter() - t) * 1000)
    return out


def pct(ms: list[float], q: float) -> float:
    return float(np.percentile(ms, q))


def table(figures: dict) -> str:
    rows = ["| path | requests | p50 ms | p99 ms | max ms |", "|---|---:|---:|---:|---:|"]
    for name, label in (("recent", f"`recommend --recent` ({figures['recent']} events), on request"),
                        ("published", "`recommend` from the published vector (reference)")):
        ms = figures["latency_ms"][name]
        rows.append(f"| {label} | {len(ms):,} | {pct(ms, 50):.2f} | {pct(ms, 99):.2f} | {max(ms):.2f} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--warehouse", required=True, help="an ETL'd warehouse (read; a copy is written)")
    ap.add_argument("--work", default="/tmp/seqrep-bench-recent", help="where the copy goes (replaced)")
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--recent", type=int, default=3, help="events per request")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reuse", action="store_true", help="time the copy --work already holds (built by an earlier run)")
    ap.add_argument("--record", help="write bench/results/NAME.json")
    args = ap.parse_args()

    from pipelines.core.config import load_config
    from pipelines.serving.query import Query

    t = time.perf_counter()
    facts_file = Path(args.work) / "bench-facts.json"
    if args.reuse and facts_file.is_file():
        version, facts = json.loads(facts_file.read_text())
    else:
        version, facts = publish_large(Path(args.warehouse), Path(args.work), args.items)
        facts_file.write_text(json.dumps([version, facts]))
    print(f"[bench] published sasrec {version}: {args.items:,} items, {facts['index_kind']} index built in "
          f"{facts['index_build_s']}s ({time.perf_counter() - t:.0f}s in all)", flush=True)
    rng = np.random.default_rng(args.seed)
    users = [facts["users"][i] for i in rng.integers(0, len(facts["users"]), args.requests)]
    known = np.asarray(facts["known_items"])
    cfg = load_config(None, warehouse=args.work)
    with Query(args.work, ef_search=cfg.embeddings.hnsw_ef_search) as q:
        ids = {r["item_idx"]: r["item_id"] for r in q.sql(
            "SELECT item_idx, item_id FROM item_embeddings WHERE item_idx <= $n", {"n": int(known.max())}).to_pylist()}
        recent = [[ids[int(i)] for i in rng.choice(known, args.recent, replace=False)] for _ in users]
        t = time.perf_counter()
        q.recommend(users[0], "sasrec", recent=recent[0])
        load_s = time.perf_counter() - t
        q.recommend(users[0], "sasrec")
        print(f"[bench] first request (loads the model, histories, catalogue): {load_s:.2f}s", flush=True)
        on_request = timed(lambda u, r: q.recommend(u, "sasrec", recent=r), list(zip(users, recent)))
        published = timed(lambda u: q.recommend(u, "sasrec"), [(u,) for u in users[: max(200, args.requests // 10)]])
    figures = {"items": args.items, "requests": args.requests, "recent": args.recent, "version": version,
               "index_kind": facts["index_kind"], "index_build_s": facts["index_build_s"],
               "first_request_s": round(load_s, 2),
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
               "latency_ms": {"recent": [round(x, 3) for x in on_request], "published": [round(x, 3) for x in published]}}
    text = table(figures)
    print(text)
    print(f"[bench] p99 recent {pct(on_request, 99):.2f} ms (target < 20 ms); median {statistics.median(on_request):.2f} ms; "
          f"peak RSS {figures['peak_rss_mb']:,} MB", flush=True)
    if args.record:
        from bench.results import record

        record(args.record, figures, text)


if __name__ == "__main__":
    main()
