-- The views `seqrep query sql` and the Python API (pipelines/serving/query.py) read, over the warehouse's
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

-- The same per segment of users (segmentation: history | target; segment: 1-5, 6-20, ... | head, torso, tail).
CREATE VIEW metric_segments AS SELECT * FROM read_parquet(:root || '/metric_segments/method=*/dt=*/*.parquet',
  hive_partitioning = true, hive_types = {'dt': DATE}, union_by_name = true);

-- The live version of each (model, dt): what `seqrep publish` recorded (other versions' tables may lie beside).
CREATE VIEW published AS SELECT "method" AS model, "asof" AS dt, model_version, users, items, dim
  FROM read_json(:root || '/_manifests/stage=publish/model=*/dt=*.json', columns = {
    'method': 'VARCHAR', 'asof': 'DATE', 'model_version': 'VARCHAR', 'users': 'BIGINT', 'items': 'BIGINT', 'dim': 'INTEGER'});

-- User vectors of the published version per (model, dt): user_id, user_idx, vector FLOAT[dim], dim, model_version,
-- asof, n_events, fold_in.
CREATE VIEW user_embeddings AS SELECT e.* EXCLUDE (version)
  FROM read_parquet(:root || '/embeddings/users/model=*/dt=*/version=*/*.parquet',
    hive_partitioning = true, hive_types = {'dt': DATE}, union_by_name = true) e
  SEMI JOIN published p ON e.model = p.model AND e.dt = p.dt AND e.model_version = p.model_version;

-- Item vectors of the published version per (model, dt): domain, item_id, item_idx, vector FLOAT[dim], dim,
-- model_version, asof, n_events.
CREATE VIEW item_embeddings AS SELECT e.* EXCLUDE (version)
  FROM read_parquet(:root || '/embeddings/items/model=*/dt=*/version=*/*.parquet',
    hive_partitioning = true, hive_types = {'dt': DATE}, union_by_name = true) e
  SEMI JOIN published p ON e.model = p.model AND e.dt = p.dt AND e.model_version = p.model_version;

-- The user-item graph per day (graphs/user_item): user_idx, item_idx, count, weight, first_ts, last_ts.
-- A user's seen items as of D are the rows with dt <= D (`seqrep query recommend` excludes them).
CREATE VIEW user_items AS SELECT * FROM read_parquet(:root || '/graphs/user_item/dt=*/*.parquet',
  hive_partitioning = true, hive_types = {'dt': DATE}, union_by_name = true);

-- The newest live vector of each (model, user) that `seqrep stream` wrote (pipelines/serving/live.py): user_id,
-- user_idx (null: a user the tables do not have yet), vector, dim, model_version, base_dt (the published day it
-- extends), event_time (the user's newest live event), n_live, batch. Queries use it when event_time is after
-- the published day they read.
CREATE VIEW user_embeddings_live AS SELECT * EXCLUDE (_newest) FROM (
  SELECT *, row_number() OVER (PARTITION BY model, user_id ORDER BY batch DESC) AS _newest
  FROM read_parquet(:root || '/embeddings/users_live/model=*/batch=*/*.parquet',
    hive_partitioning = true, hive_types = {'batch': BIGINT}, union_by_name = true)) WHERE _newest = 1;

-- Clean events a stream has taken in since its published day (event_id, user_id, item_id, ts, item_idx, ...).
CREATE VIEW live_events AS SELECT * FROM read_parquet(:root || '/live/events/model=*/batch=*/*.parquet',
  hive_partitioning = true, hive_types = {'batch': BIGINT}, union_by_name = true);
