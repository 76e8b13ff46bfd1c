-- Every user's sequence as of a day: the latest row up to it (a day stores only active users).
-- Input view `sequences` (the sequences table). Parameter: :asof (a DATE). Spark SQL and DuckDB.
SELECT *
FROM (
  SELECT s.*, ROW_NUMBER() OVER (PARTITION BY user_idx ORDER BY dt DESC) AS _latest
  FROM sequences s
  WHERE dt <= :asof
) ranked
WHERE _latest = 1
