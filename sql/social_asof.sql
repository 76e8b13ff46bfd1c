-- The social graph as of a day: every user-user edge first seen on or before it (each edge is
-- in one partition only, the day it was first seen).
-- Input view `social` (graphs/social). Parameter: :asof (a DATE). Spark SQL and DuckDB.
SELECT user_idx, friend_idx
FROM social
WHERE dt <= :asof
