-- Prices reach Postgres through a Redis stream that may deliver a record
-- twice (a fetcher dies after INSERT, before XACK). The batch id makes the
-- write idempotent; rows from before this column stay NULL and are untouched.
-- +goose Up
ALTER TABLE price_records ADD COLUMN IF NOT EXISTS batch_id VARCHAR(200);
CREATE UNIQUE INDEX IF NOT EXISTS ux_price_records_batch_id ON price_records (batch_id) WHERE batch_id IS NOT NULL;

-- +goose Down
DROP INDEX IF EXISTS ux_price_records_batch_id;
ALTER TABLE price_records DROP COLUMN IF EXISTS batch_id;
