-- The table the original CryptoPulse used; IF NOT EXISTS lets an existing
-- history carry over untouched.
-- +goose Up
CREATE TABLE IF NOT EXISTS price_records (
    id          BIGSERIAL PRIMARY KEY,
    coin_id     VARCHAR(100) NOT NULL,
    vs_currency VARCHAR(10)  NOT NULL DEFAULT 'usd',
    price       NUMERIC      NOT NULL,
    fetched_at  TIMESTAMPTZ  NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_price_records_coin_fetched ON price_records (coin_id, fetched_at);

-- +goose Down
DROP TABLE IF EXISTS price_records;
