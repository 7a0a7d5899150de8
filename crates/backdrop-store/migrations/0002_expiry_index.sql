-- The results sweep's partial index, respelled with the boolean literal its queries use.
-- SQLite uses a partial index only for a query that repeats its condition to the letter,
-- and databases made before version 2 spelled false as 0 there.
DROP INDEX tasks_expiry;
CREATE INDEX tasks_expiry ON tasks (expires_at) WHERE result_expired = FALSE AND expires_at IS NOT NULL;
