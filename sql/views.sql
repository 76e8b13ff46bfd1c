-- The views `seqrep query sql` and the Python API (pipelines/query.py) read, over the warehouse's
-- Parquet, for DuckDB. :root is the warehouse folder, inlined by the code as a quoted literal
-- (DuckDB takes no parameters in a view's definition); nothing else is ever inlined.
-- A view whose table has no files yet is left out (the error then names the command that writes it).
-- Partition keys (dt, model, method, source) become columns.

-- Every clean event: event_id, user_id, item_id, event_type, ts, domain, value, session_hint, dt.
CREATE VIEW events AS SELECT * FROM read_parquet(:root || '/clean/events/dt=*/*.parquet',
  hive_partitioning = true, hive_types = {'dt': DATE}, union_by_name = true);

-- Events with their session ids (session_id, session_seq, session_start, gap_s, ...).
CREATE VIEW sessions AS SELECT * FROM read_parquet(:root || '/sessions/dt=*/*.parquet',
  hive_partitioning = true, hive_types = {'dt': DATE}, union_by_name = true);

-- Per-user histories: one row per (user, day the user was active); the row of the largest dt <= D
-- is the user's sequence as of D (sql/sequences_asof.sql).
CREATE VIEW sequences AS SELECT * FROM read_parquet(:root || '/sequences/dt=*/*.parquet',
  hive_partitioning = true, hive_types = {'dt': DATE}, union_by_name = true);

-- Full-ranking metrics of every trained (method, day, version): metric, k, value, split, protocol, ...
CREATE VIEW metrics AS SELECT * FROM read_parquet(:root || '/metrics/method=*/dt=*/*.parquet',
  hive_partitioning = true, hive_types = {'dt': DATE}, union_by_name = true);

-- User vectors per (model, dt): user_id, user_idx, vector FLOAT[dim], dim, model_version, asof, n_events, fold_in.
CREATE VIEW user_embeddings AS SELECT * FROM read_parquet(:root || '/embeddings/users/model=*/dt=*/*.parquet',
  hive_partitioning = true, hive_types = {'dt': DATE}, union_by_name = true);

-- Item vectors per (model, dt): domain, item_id, item_idx, vector FLOAT[dim], dim, model_version, asof, n_events.
CREATE VIEW item_embeddings AS SELECT * FROM read_parquet(:root || '/embeddings/items/model=*/dt=*/*.parquet',
  hive_partitioning = true, hive_types = {'dt': DATE}, union_by_name = true);

-- The user-item graph per day (graphs/user_item): user_idx, item_idx, count, weight, first_ts, last_ts.
-- A user's seen items as of D are the rows with dt <= D (`seqrep query recommend` excludes them).
CREATE VIEW user_items AS SELECT * FROM read_parquet(:root || '/graphs/user_item/dt=*/*.parquet',
  hive_partitioning = true, hive_types = {'dt': DATE}, union_by_name = true);
