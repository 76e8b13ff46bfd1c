-- Sessionize events. The same text runs on Spark SQL (the ETL) and on DuckDB (bench/etl.py).
--
-- Input view `events`: clean events plus
--   ts_us             BIGINT  event time in microseconds since the epoch (UTC)
--   is_carry          INT     1 for a carried row: the previous day's last event of a
--                             (user_id, session_hint) that ended within the gap of midnight
--   carry_session_id  STRING  its session id       (carried rows only)
--   carry_seq         INT     its position (1-based) in that session
--   carry_start_us    BIGINT  that session's start
-- Parameters: :gap_us (a gap strictly longer than this starts a session), :max_events.
--
-- Sessions never mix users or source sessions (session_hint). Order is (ts_us, event_id),
-- so equal timestamps are ordered deterministically. Every step uses the same window
-- order, so Spark sorts the data once.
WITH ordered AS (
  SELECT e.*,
         ROW_NUMBER()  OVER w AS rn,
         LAG(ts_us)    OVER w AS prev_ts_us,
         LAG(item_id)  OVER w AS prev_item,
         LAG(domain)   OVER w AS prev_dom,
         FIRST_VALUE(is_carry)         OVER w AS has_carry,
         FIRST_VALUE(carry_session_id) OVER w AS c_session_id,
         FIRST_VALUE(carry_start_us)   OVER w AS c_start_us,
         FIRST_VALUE(CASE WHEN is_carry = 1 THEN carry_seq - 1 ELSE 0 END) OVER w AS c_offset
  FROM events e
  WINDOW w AS (PARTITION BY user_id, session_hint ORDER BY ts_us, event_id)
),
gaps AS (
  SELECT *,
         CASE WHEN prev_ts_us IS NULL OR ts_us - prev_ts_us > :gap_us THEN 1 ELSE 0 END AS gap_start
  FROM ordered
),
groups AS (
  -- grp: number of the gap-separated run; grp_rn: row number where the run began
  SELECT *,
         SUM(gap_start) OVER r AS grp,
         MAX(CASE WHEN gap_start = 1 THEN rn END) OVER r AS grp_rn
  FROM gaps
  WINDOW r AS (PARTITION BY user_id, session_hint ORDER BY ts_us, event_id
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
positions AS (
  -- 0-based position in the run; the first run continues a carried session's count
  SELECT *,
         rn - grp_rn + CASE WHEN grp = 1 AND has_carry = 1 THEN c_offset ELSE 0 END AS pos0
  FROM groups
),
starts AS (
  -- a run longer than :max_events is cut into consecutive sessions
  SELECT *,
         CASE WHEN gap_start = 1 OR pos0 % :max_events = 0 THEN 1 ELSE 0 END AS is_start,
         CASE WHEN grp = 1 AND has_carry = 1 AND pos0 < :max_events THEN 1 ELSE 0 END AS carried
  FROM positions
),
sessions AS (
  SELECT *,
         -- the latest session start so far: zero-padded row number, then its event id
         MAX(CASE WHEN is_start = 1 THEN concat(lpad(CAST(rn AS STRING), 19, '0'), event_id) END) OVER r AS start_key,
         MAX(CASE WHEN is_start = 1 THEN ts_us END) OVER r AS start_us
  FROM starts
  WINDOW r AS (PARTITION BY user_id, session_hint ORDER BY ts_us, event_id
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
SELECT event_id, user_id, item_id, event_type, ts, domain, value, session_hint, dt,
       CASE WHEN carried = 1 THEN c_session_id
            ELSE substr(md5(concat_ws('|', user_id, coalesce(session_hint, ''), substr(start_key, 20))), 1, 16)
       END AS session_id,
       CAST(pos0 % :max_events + 1 AS INT) AS session_seq,
       CASE WHEN carried = 1 THEN c_start_us ELSE start_us END AS session_start_us,
       CASE WHEN pos0 % :max_events = 0 THEN NULL ELSE prev_item END AS prev_item_id,
       CASE WHEN pos0 % :max_events = 0 THEN NULL ELSE prev_dom END AS prev_domain,
       CASE WHEN pos0 % :max_events = 0 THEN NULL ELSE CAST(ts_us - prev_ts_us AS DOUBLE) / 1e6 END AS gap_s
FROM sessions
WHERE is_carry = 0
