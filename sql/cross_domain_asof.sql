-- A cross-domain pair's rows as of a day: each user's rows of their latest day up to it (a day
-- stores only its active users, each row their state as of that day). Input view `pair_rows`
-- (the pair's sequences or splits table). Parameter: :asof (a DATE). Read by DuckDB (pipelines/modeling/data.py).
SELECT *
FROM (
  SELECT r.*, DENSE_RANK() OVER (PARTITION BY user_id ORDER BY dt DESC) AS _latest
  FROM pair_rows r
  WHERE dt <= :asof
) ranked
WHERE _latest = 1
