"""``seqrep query``: SQL and nearest-neighbour queries on the published embedding tables.

Each query is a method of ``pipelines.serving.query.Query`` and one row of ``QUERIES``."""

from __future__ import annotations

import argparse

from pipelines.commands.common import config, parse_date, show
from pipelines.core.privacy import read_key

#: (command, argument, help, Query method, has --k, has --domain, title of the result)
QUERIES = (
    ("user", "USER_ID", "a user's vector and metadata", "user", False, False, "user {id}"),
    ("similar-items", "ITEM_ID", "items nearest an item (inner product)", "similar_items", True, True,
     "items similar to {id}"),
    ("similar-users", "USER_ID", "users nearest a user (inner product)", "similar_users", True, False,
     "users similar to {id}"),
    ("recommend", "USER_ID", "top items for a user, seen items excluded", "recommend", True, True,
     "recommended for user {id} (seen items excluded)"),
)


def register(sub, common: argparse.ArgumentParser) -> None:
    q = sub.add_parser("query", parents=[common], help="SQL and nearest-neighbour queries on the embedding tables")
    qsub = q.add_subparsers(dest="query", required=True, metavar="QUERY")
    s = qsub.add_parser("sql", parents=[common], help="one read-only SELECT over the views of sql/views.sql")
    s.add_argument("text", metavar="SQL")
    s.add_argument("--limit", type=int, default=50, help="rows printed in table output (default 50; --json prints all)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=sql)
    for name, arg, text, method, has_k, has_domain, title in QUERIES:
        s = qsub.add_parser(name, parents=[common], help=text)
        s.add_argument("id", metavar=arg)
        s.add_argument("--method", required=True)
        s.add_argument("--date", type=parse_date, help="as of this day (default: the newest day with embeddings of the method)")
        s.add_argument("--json", action="store_true")
        if has_k:
            s.add_argument("--k", type=int, default=10)
        if has_domain:
            s.add_argument("--domain", help="recommend: only items of this domain (e.g. a pair's target); "
                                            "similar-items: the item's domain, when its id exists in several")
        if name == "recommend":
            s.add_argument("--recent", type=lambda v: [x for x in v.split(",") if x], metavar="ITEM,ITEM,...",
                           help="events newer than the tables (a session in progress): the user's vector is "
                                "encoded now from their history followed by these items, with the published model")
        s.set_defaults(func=lookup, query_method=method, title=title)


def _open(args: argparse.Namespace):
    from pipelines.serving.query import Query

    cfg = config(args)
    key = read_key(cfg.privacy.key_env, cfg.privacy.key_file)  # None: where the warehouse's record says
    return Query(cfg.warehouse, ef_search=cfg.embeddings.hnsw_ef_search, limits=cfg.query, key=key)


def sql(args: argparse.Namespace) -> None:
    with _open(args) as q:
        rows = q.sql(args.text).to_pylist()
    show(rows if args.json else rows[:args.limit], args.json)
    if not args.json and len(rows) > args.limit:
        print(f"({len(rows):,} rows; {args.limit} shown: --limit N or --json for more)")


def lookup(args: argparse.Namespace) -> None:
    """A query of ``QUERIES``: the Query method named by the subcommand, its rows printed."""
    extra = {k: getattr(args, k) for k in ("k", "domain", "recent") if getattr(args, k, None) is not None}
    with _open(args) as q:
        result = getattr(q, args.query_method)(args.id, args.method, day=args.date, **extra)
    rows = [result] if isinstance(result, dict) else result
    day = rows[0]["dt"] if rows else args.date
    title = f"{args.title.format(id=args.id)}: {args.method} as of {day}"
    if rows and "recent" in rows[0] and not args.json:  # encoded on request: say from what, once
        r = rows[0]
        title += (f", encoded now from {r['history']:,} stored + {r['recent']:,} recent events"
                  + (f" (no vector, left out: {', '.join(r['recent_unknown'])})" if r["recent_unknown"] else ""))
        rows = [{k: v for k, v in row.items() if k not in ("history", "recent", "recent_unknown")} for row in rows]
    if args.query_method == "user" or args.json:
        show(rows, args.json, title)
    else:
        show([{k: v for k, v in r.items() if k not in ("method", "dt")} for r in rows], args.json, title)
