-- The item-transition graph as of a day: daily counts and weights are additive.
-- Input view `item_transitions` (graphs/item_transitions). Parameter: :asof (a DATE).
SELECT src_idx, dst_idx, SUM(count) AS count, SUM(weight) AS weight
FROM item_transitions
WHERE dt <= :asof
GROUP BY src_idx, dst_idx
