-- The user-item graph as of a day: daily event counts per (user, item) are additive.
-- Input view `user_item` (graphs/user_item). Parameter: :asof (a DATE). Spark SQL and DuckDB.
SELECT user_idx, item_idx, SUM(count) AS count
FROM user_item
WHERE dt <= :asof
GROUP BY user_idx, item_idx
