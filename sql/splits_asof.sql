-- Evaluation splits as of a day. Input view `splits` (the splits table). Parameters: :asof (a DATE),
-- :protocol ('loo' or 'temporal'). Leave-one-out rows are each user's latest up to the day, like the
-- sequences as of it; temporal rows are the day's own (its targets are the items of that day).
SELECT user_idx, split, history_len, target_idx
FROM (
  SELECT s.*, DENSE_RANK() OVER (PARTITION BY user_idx ORDER BY dt DESC) AS _latest
  FROM splits s
  WHERE protocol = :protocol
    AND (dt = :asof OR (:protocol = 'loo' AND dt < :asof))
) ranked
WHERE _latest = 1
