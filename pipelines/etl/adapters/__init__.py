"""Source adapters by name: one module per log format, each a ``read(spark, path, cfg) -> Parsed``
(``common.py``). A new adapter is one module plus one line here."""

from __future__ import annotations

from pipelines.etl.adapters import amazon_cdr, diginetica, lastfm, movielens, parquet, synthetic, taobao
from pipelines.etl.adapters.common import Adapter

ADAPTERS: dict[str, Adapter] = {
    "parquet": parquet.read,
    "synthetic": synthetic.read,
    "movielens": movielens.read,
    "taobao": taobao.read,
    "diginetica": diginetica.read,
    "amazon-cdr": amazon_cdr.read,
    "lastfm": lastfm.read,
}
