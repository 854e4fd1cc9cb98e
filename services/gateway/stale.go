package main

import (
	"strconv"
	"time"

	"cryptopulse/libs/price"
)

// answerOf is the 200 body for a successful reply. Stale is copied as the
// fetcher set it: only a fetcher knows the price is an old stored one.
func answerOf(r price.Reply) price.Answer {
	return price.Answer{
		CoinID: r.CoinID, VsCurrency: r.VsCurrency, Price: r.Price, FetchedAt: r.FetchedAt,
		Stale: r.Stale, Batch: r.Batch,
	}
}

// staleWarning is RFC 7234's warn-code 110, which HTTP caches and client
// libraries already understand.
const staleWarning = `110 - "Response is Stale"`

// freshnessHeaders returns the header fields that mark an answer made of
// stale prices: X-Price-Stale: 1, Age (whole seconds since the oldest stale
// price was fetched, as of now) and Warning. An answer without a stale price
// gets none, so a client can rely on their absence meaning a fresh fetch.
func freshnessHeaders(now time.Time, answers ...price.Answer) [][2]string {
	stale := false
	var oldest time.Time
	for _, a := range answers {
		if !a.Stale {
			continue
		}
		stale = true
		if t, err := time.Parse(time.RFC3339Nano, a.FetchedAt); err == nil && (oldest.IsZero() || t.Before(oldest)) {
			oldest = t
		}
	}
	if !stale {
		return nil
	}
	h := [][2]string{{"X-Price-Stale", "1"}}
	if !oldest.IsZero() {
		// Age is a non-negative whole number of seconds (RFC 9111 5.1); a
		// fetcher's clock ahead of ours must not make it negative.
		h = append(h, [2]string{"Age", strconv.FormatInt(int64(max(now.Sub(oldest), 0)/time.Second), 10)})
	}
	return append(h, [2]string{"Warning", staleWarning})
}
