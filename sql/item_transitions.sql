-- Item transitions: consecutive events of one session, per day. Spark SQL and DuckDB.
-- Input view `steps`: session rows (sql/sessionize.sql output) with a `weight` column, the
-- weight of the destination event. Parameter: :drop_self_loops (a repeat of one item is not a step).
SELECT dt,
       prev_domain  AS src_domain,
       prev_item_id AS src_item_id,
       domain       AS dst_domain,
       item_id      AS dst_item_id,
       COUNT(*)     AS count,
       SUM(weight)  AS weight
FROM steps
WHERE prev_item_id IS NOT NULL
  AND NOT (:drop_self_loops AND prev_domain = domain AND prev_item_id = item_id)
GROUP BY dt, prev_domain, prev_item_id, domain, item_id
