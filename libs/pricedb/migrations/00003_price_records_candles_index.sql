-- Candles (GET /v1/price/{coinId}/candles) read a coin's prices in one
-- currency in fetched_at order. With price (and id, for open and close) in
-- the index those reads are index-only scans of a range; the older
-- (coin_id, fetched_at) index leaves vs_currency and price on the heap.
-- bench/candles.txt has the numbers on a million rows with and without it.
-- +goose Up
CREATE INDEX IF NOT EXISTS idx_price_records_coin_currency_fetched
    ON price_records (coin_id, vs_currency, fetched_at) INCLUDE (price, id);

-- +goose Down
DROP INDEX IF EXISTS idx_price_records_coin_currency_fetched;
