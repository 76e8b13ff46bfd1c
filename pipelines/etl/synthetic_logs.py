"""A seeded generator of realistic raw behavior logs, written as a product would write them.

The logs use a product's own column names (``uid, sku, action, event_time_ms, site, price,
request_id``), one Parquet folder per arrival day, so the demo and benchmarks exercise the
production ``parquet`` adapter and its column mapping (``SYNTHETIC_COLUMNS``). What makes them
realistic enough to test a pipeline:

- item popularity is Zipf-like within each category, and users' activity is heavy-tailed;
- users browse in sessions: a session stays mostly within one category, events inside it are
  seconds to minutes apart, and sessions are hours apart (so some cross midnight);
- a view -> cart -> buy funnel (carts and buys follow views of the same item);
- two domains with their own catalogue, item titles and categories as text (and, with
  ``synthetic.item_vector_dim``, a vector per item that encodes its category with noise); with
  ``synthetic.user_taste``, users favour two category indices in every domain (a taste a
  cross-domain method can carry from one domain to the other);
- a small share of bad rows on purpose: empty user ids, unknown actions, exact duplicate rows,
  and late arrivals (an event logged in the next day's folder).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.core.config import SyntheticConfig

#: Canonical column -> column of the synthetic logs (the ``ingest.columns`` mapping).
SYNTHETIC_COLUMNS = {
    "event_id": "request_id",
    "user_id": "uid",
    "item_id": "sku",
    "event_type": "action",
    "ts": "event_time_ms",
    "domain": "site",
    "value": "price",
}
#: The items' vector column with ``synthetic.item_vector_dim`` (list it in ``ingest.item_vectors``).
SYNTHETIC_VECTOR_COLUMN = "image_vec"
SYNTHETIC_EVENT_TYPES = {"page_view": "view", "add_to_cart": "cart", "wishlist": "fav", "purchase": "buy"}

_ADJ = ["Red", "Quiet", "Lost", "Golden", "Hidden", "Broken", "Silent", "Bright", "Last", "Wild"]
_NOUN = ["River", "Empire", "Garden", "Machine", "Voyage", "Shadow", "Crown", "Signal", "Harbor", "Code"]


def item_catalogue(cfg: SyntheticConfig) -> dict[str, np.ndarray]:
    """Items of every domain: ids, categories, titles, prices (deterministic from the seed)."""
    rng = np.random.default_rng(cfg.seed)
    ids, domains, cats, titles, prices = [], [], [], [], []
    for d in cfg.domains:
        n = cfg.items_per_domain
        cat = rng.integers(0, cfg.categories_per_domain, n)
        a, b = rng.integers(0, len(_ADJ), n), rng.integers(0, len(_NOUN), n)
        ids.append(np.array([f"{d[:2]}{i:06d}" for i in range(n)]))
        domains.append(np.full(n, d))
        cats.append(np.array([f"{d}/cat{c:02d}" for c in cat]))
        titles.append(np.array([f"The {_ADJ[x]} {_NOUN[y]} ({d})" for x, y in zip(a, b)]))
        prices.append(np.round(rng.lognormal(3.0, 0.8, n), 2))
    return {
        "item_id": np.concatenate(ids), "domain": np.concatenate(domains),
        "category": np.concatenate(cats), "title": np.concatenate(titles),
        "price": np.concatenate(prices),
    }


def item_vectors(cfg: SyntheticConfig, category: np.ndarray) -> pa.Array:
    """The items' ``image_vec`` (``synthetic.item_vector_dim`` > 0): a stand-in for an image
    encoder's output that knows the item's category, noisily.

        x_i = u_c(i) + noise * z_i / sqrt(k),   u_c uniform on the unit sphere, z_i ~ N(0, I_k)

    so the noise's expected norm is ``noise`` against the signal's 1; a share ``item_vector_missing``
    of the items has none (null). Drawn from a stream of their own: the rest of the logs do not
    change with these settings."""
    k = cfg.item_vector_dim
    rng = np.random.default_rng([cfg.seed, 3])
    names, code = np.unique(category, return_inverse=True)
    centre = rng.standard_normal((len(names), k))
    centre /= np.linalg.norm(centre, axis=1, keepdims=True)
    x = (centre[code] + cfg.item_vector_noise * rng.standard_normal((len(code), k)) / np.sqrt(k)).astype(np.float32)
    missing = rng.random(len(code)) < cfg.item_vector_missing
    return pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), k, mask=pa.array(missing))


def user_names(cfg: SyntheticConfig) -> np.ndarray:
    return np.array([f"u{u:07d}" for u in range(cfg.users)], dtype=object)


def generate_day(cfg: SyntheticConfig, day: date, catalogue: dict[str, np.ndarray]) -> pa.Table:
    """One day of events (before bad rows and late arrivals), sorted by time."""
    rng = np.random.default_rng([cfg.seed, day.toordinal()])  # drawn from in this order, step by step
    s_user, s_len, s_start, s_cat = _sessions(cfg, rng, catalogue)
    if cfg.user_taste > 0:  # its own stream: the draws above and below are those of user_taste 0
        s_cat = _with_taste(cfg, np.random.default_rng([cfg.seed, day.toordinal(), 1]), s_user, s_cat,
                            np.unique(catalogue["category"]))
    t = _click_times(rng, s_start, s_len)
    item = _click_items(cfg, rng, catalogue, s_cat, s_len)
    extra_idx, extra_act, extra_dt = _funnel(rng, len(t))
    action = np.full(len(t), "page_view", dtype=object)
    all_user = np.concatenate([np.repeat(s_user, s_len), np.repeat(s_user, s_len)[extra_idx]])
    all_item = np.concatenate([item, item[extra_idx]])
    all_t = np.concatenate([t, t[extra_idx] + extra_dt])
    all_act = np.concatenate([action, extra_act])

    t0 = datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()
    ts_ms = (t0 * 1000 + all_t * 1000).astype(np.int64)
    srt = np.lexsort((all_user, ts_ms))
    ts_ms, all_user, all_item, all_act = ts_ms[srt], all_user[srt], all_item[srt], all_act[srt]
    req = pc.binary_join_element_wise(
        f"{day:%Y%m%d}", pc.cast(pa.array(np.arange(len(ts_ms))), pa.string()), "-"
    )
    return pa.table({
        "request_id": req,
        "uid": pa.array(user_names(cfg)[all_user], pa.string()),
        "sku": pa.array(catalogue["item_id"][all_item], pa.string()),
        "action": pa.array(all_act, pa.string()),
        "event_time_ms": pa.array(ts_ms, pa.int64()),
        "site": pa.array(catalogue["domain"][all_item], pa.string()),
        "price": pa.array(catalogue["price"][all_item], pa.float64()),
    })


def _sessions(cfg: SyntheticConfig, rng: np.random.Generator, catalogue: dict[str, np.ndarray]):
    """Each session's user (heavy-tailed), length (geometric, mean ~8 views before the funnel),
    start in seconds of the day and category."""
    mean_len = 8.0
    n_sessions = max(1, int(cfg.events_per_day / (mean_len * 1.12)))
    user_weight = 1.0 / np.arange(1, cfg.users + 1) ** 0.8
    user_weight /= user_weight.sum()
    s_user = rng.choice(cfg.users, n_sessions, p=user_weight)
    s_len = rng.geometric(1.0 / mean_len, n_sessions)
    # Session starts: a daily rhythm (more in the evening), some late enough to cross midnight.
    hour = (rng.normal(19.0, 4.5, n_sessions) % 24.0)
    # Each session browses one category of one domain.
    s_item_seed = rng.integers(0, len(catalogue["item_id"]), n_sessions)
    return s_user, s_len, hour * 3600.0, catalogue["category"][s_item_seed]


def _with_taste(cfg: SyntheticConfig, rng: np.random.Generator, s_user: np.ndarray, s_cat: np.ndarray,
                categories: np.ndarray) -> np.ndarray:
    """``user_taste`` of the sessions browse one of their user's two favourite category indices
    (fixed by the seed, shared by every domain), in the domain the session had (where the
    catalogue has that category: a small one may not)."""
    favourite = np.random.default_rng([cfg.seed, 2]).integers(0, cfg.categories_per_domain, (cfg.users, 2))
    pick = favourite[s_user, rng.integers(0, 2, len(s_user))]
    domain = np.array([c.rsplit("/", 1)[0] for c in s_cat], dtype=object)
    liked = np.array([f"{d}/cat{k:02d}" for d, k in zip(domain, pick)], dtype=object)
    use = (rng.random(len(s_user)) < cfg.user_taste) & np.isin(liked, categories)
    return np.where(use, liked, s_cat)


def _click_times(rng: np.random.Generator, s_start: np.ndarray, s_len: np.ndarray) -> np.ndarray:
    """Seconds of the day of every view: lognormal gaps (seconds to minutes), cumulated per session."""
    gaps = rng.lognormal(np.log(40.0), 1.0, int(s_len.sum()))
    first = np.r_[0, np.cumsum(s_len)[:-1]]
    gaps[first] = 0.0
    cum = np.cumsum(gaps)
    return np.repeat(s_start, s_len) + (cum - np.repeat(cum[first], s_len))


def _click_items(cfg: SyntheticConfig, rng: np.random.Generator, catalogue: dict[str, np.ndarray],
                 s_cat: np.ndarray, s_len: np.ndarray) -> np.ndarray:
    """The item of every view: Zipf popularity within the session's category, a tenth astray."""
    n = int(s_len.sum())
    cat_codes, cat_of_item = np.unique(catalogue["category"], return_inverse=True)
    order = np.argsort(cat_of_item, kind="stable")
    counts = np.bincount(cat_of_item, minlength=len(cat_codes))
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    ev_cat = np.searchsorted(cat_codes, np.repeat(s_cat, s_len))
    rank = rng.zipf(cfg.zipf_a, n) - 1
    rank = rank % counts[ev_cat]
    item = order[starts[ev_cat] + rank]
    # A few clicks leave the category (cross-category transitions).
    stray = rng.random(n) < 0.1
    item[stray] = rng.integers(0, len(catalogue["item_id"]), stray.sum())
    return item


def _funnel(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views followed by a cart of the same item, carts by a purchase, some by a wishlist: the
    view each follows, its action and its delay in seconds."""
    cart = rng.random(n) < 0.08
    buy = cart & (rng.random(n) < 0.3)
    fav = (~cart) & (rng.random(n) < 0.03)
    extra_idx = np.concatenate([np.flatnonzero(cart), np.flatnonzero(buy), np.flatnonzero(fav)])
    extra_act = np.concatenate([
        np.full(cart.sum(), "add_to_cart", dtype=object), np.full(buy.sum(), "purchase", dtype=object),
        np.full(fav.sum(), "wishlist", dtype=object),
    ])
    extra_dt = np.concatenate([
        rng.uniform(5, 60, cart.sum()), rng.uniform(60, 300, buy.sum()), rng.uniform(2, 30, fav.sum()),
    ])
    return extra_idx, extra_act, extra_dt


def _spoil(table: pa.Table, cfg: SyntheticConfig, day: date) -> tuple[pa.Table, pa.Table]:
    """Make a few rows bad on purpose; return (rows logged on ``day``, late rows for the next day)."""
    rng = np.random.default_rng([cfg.seed, day.toordinal(), 1])
    n = table.num_rows
    k = int(n * cfg.bad_row_rate)
    if k == 0:
        return table, table.slice(0, 0)
    pick = rng.choice(n, 4 * k, replace=False)
    empty_uid, hover, dupes, late = (np.zeros(n, bool) for _ in range(4))
    empty_uid[pick[:k]] = True
    hover[pick[k : 2 * k]] = True
    dupes[pick[2 * k : 3 * k]] = True
    late[pick[3 * k :]] = True
    table = table.set_column(
        table.schema.get_field_index("uid"), "uid",
        pc.if_else(pa.array(empty_uid), pa.scalar(""), table.column("uid")),
    )
    table = table.set_column(
        table.schema.get_field_index("action"), "action",
        pc.if_else(pa.array(hover), pa.scalar("hover"), table.column("action")),
    )
    on_time = pa.concat_tables([table.filter(pa.array(~late)), table.filter(pa.array(dupes))])
    return on_time, table.filter(pa.array(late))


def write_logs(cfg: SyntheticConfig, out: str | Path) -> list[Path]:
    """Write ``cfg.days`` days of logs to ``out/dt=YYYY-MM-DD/part-0.parquet``; return the files.

    A row goes to the folder of its event's UTC day (sessions started late in the evening spill
    into the next day's folder), except late arrivals, which are logged one day late. Item
    metadata goes to ``out/_items/items.parquet``.
    """
    out = Path(out)
    catalogue = item_catalogue(cfg)
    tables, late_tables = [], []
    for i in range(cfg.days):
        on_time, late = _spoil(generate_day(cfg, cfg.start_date + timedelta(days=i), catalogue), cfg,
                               cfg.start_date + timedelta(days=i))
        tables.append(on_time)
        late_tables.append(late)
    day_ms = 86_400_000
    folder_of = lambda t, shift: pc.add(pc.divide(t.column("event_time_ms"), day_ms), shift)  # noqa: E731
    rows = pa.concat_tables(tables + late_tables)
    folder = pa.concat_arrays([
        *[folder_of(t, 0).combine_chunks() for t in tables], *[folder_of(t, 1).combine_chunks() for t in late_tables]])
    files = []
    epoch = date(1970, 1, 1)
    for f in sorted(set(folder.to_pylist())):
        day = epoch + timedelta(days=int(f))
        if day >= cfg.start_date + timedelta(days=cfg.days):
            continue  # not yet arrived: the log of a day after the generated ones
        part = rows.filter(pc.equal(folder, f))
        path = out / f"dt={day.isoformat()}" / "part-0.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(part, path)
        files.append(path)
    # Item metadata beside the logs, in a folder the event reader skips (leading underscore).
    (out / "_items").mkdir(parents=True, exist_ok=True)
    items = pa.table({k: pa.array(v) for k, v in catalogue.items()})
    if cfg.item_vector_dim:
        items = items.append_column(SYNTHETIC_VECTOR_COLUMN, item_vectors(cfg, catalogue["category"]))
    pq.write_table(items, out / "_items" / "items.parquet")
    return files
