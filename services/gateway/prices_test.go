package main

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"cryptopulse/libs/httperr"
	"cryptopulse/libs/price"
)

// TestPricesBadInputNeverReachesRedis: every refusal of GET /v1/prices is a
// 400 (or 401) naming the problem, and nothing reaches Redis: no stream
// entry, no throttle hit.
func TestPricesBadInputNeverReachesRedis(t *testing.T) {
	base, r := secStart(t, nil)
	auth := map[string]string{"Authorization": "Bearer " + token(t, "admin")}
	names := func(want ...string) func(t *testing.T, got httperr.Body) {
		return func(t *testing.T, got httperr.Body) {
			t.Helper()
			if got.StatusCode != 400 || got.Error != "Bad Request" {
				t.Errorf("body %+v, want a 400", got)
			}
			list, _ := got.Message.([]any)
			all := ""
			for _, m := range list {
				s, _ := m.(string)
				all += s + "\n"
			}
			for _, w := range want {
				if !strings.Contains(all, w) {
					t.Errorf("message %q does not say %q", list, w)
				}
			}
		}
	}
	var fifty, fiftyOne []string
	for i := range 51 {
		fiftyOne = append(fiftyOne, "coin-"+strconv.Itoa(i))
	}
	fifty = fiftyOne[:50]
	const p = "/v1/prices"
	rows := []secRow{
		{name: "no token", path: p + "?ids=bitcoin", statusCode: 401, expResp: unauthorized("Missing Authorization header")},
		{name: "no token before validating", path: p + "?ids=NOPE", statusCode: 401, expResp: unauthorized("Missing Authorization header")},
		{name: "no ids", path: p, header: auth, statusCode: 400, cmp: names("ids should not be empty")},
		{name: "empty ids", path: p + "?ids=", header: auth, statusCode: 400, cmp: names("ids should not be empty")},
		{name: "51 ids", path: p + "?ids=" + strings.Join(fiftyOne, ","), header: auth, statusCode: 400, cmp: names("at most 50 distinct coin ids, got 51")},
		{name: "a bad id is named", path: p + "?ids=bitcoin,Ethereum,solana", header: auth, statusCode: 400, cmp: names(`ids: "Ethereum": coinId must be`)},
		{name: "every bad id is named", path: p + "?ids=bit_coin,ok,-x", header: auth, statusCode: 400, cmp: names(`"bit_coin"`, `"-x"`)},
		{name: "empty id between commas", path: p + "?ids=bitcoin,,ethereum", header: auth, statusCode: 400, cmp: names(`ids: "": coinId must be`)},
		{name: "trailing comma", path: p + "?ids=bitcoin,", header: auth, statusCode: 400, cmp: names(`ids: "": coinId must be`)},
		{name: "space after comma", path: p + "?ids=bitcoin,%20ethereum", header: auth, statusCode: 400, cmp: names(`ids: " ethereum"`)},
		{name: "unknown query parameter", path: p + "?ids=bitcoin&limit=5", header: auth, statusCode: 400, cmp: names("property limit should not exist")},
		{name: "bad vsCurrency", path: p + "?ids=bitcoin&vsCurrency=US%20D", header: auth, statusCode: 400, cmp: names("vsCurrency")},
		{name: "50 ids and one bad", path: p + "?ids=" + strings.Join(fifty, ",") + ",BAD", header: auth, statusCode: 400, cmp: names(`"BAD"`)},
	}
	secRun(t, base, rows)
	secNothingInRedis(t, r)
}

func TestMostTellingStatus(t *testing.T) {
	for _, tt := range []struct {
		statuses []int
		want     int
	}{
		{[]int{404}, 404},
		{[]int{404, 404, 404}, 404},
		{[]int{502, 502}, 502},
		{[]int{404, 502}, 502},
		{[]int{502, 404}, 502},
		{[]int{404, 504, 502}, 504},
		{[]int{404, 503, 504}, 503},
		{[]int{404, 503, 429, 502}, 429},
		{[]int{500, 404}, 500},
		{[]int{502, 500}, 502},
		{[]int{418, 404}, 404},
	} {
		errs := make([]price.CoinError, len(tt.statuses))
		for i, s := range tt.statuses {
			errs[i] = price.CoinError{StatusCode: s}
		}
		if got := mostTellingStatus(errs); got != tt.want {
			t.Errorf("mostTellingStatus(%v) = %d, want %d", tt.statuses, got, tt.want)
		}
	}
}

// TestFreshnessHeaders: a stale answer says so in X-Price-Stale, Age (of the
// oldest stale price, whole seconds, never negative) and Warning; a fresh
// answer carries none of them.
func TestFreshnessHeaders(t *testing.T) {
	now := time.Date(2026, 2, 28, 4, 0, 0, 0, time.UTC)
	at := func(ago time.Duration) string { return now.Add(-ago).Format(price.TimeFormat) }
	fresh := price.Answer{CoinID: "bitcoin", FetchedAt: at(2 * time.Second), Batch: price.Batch{Source: price.SourceUpstream}}
	stale := func(ago time.Duration) price.Answer {
		return price.Answer{CoinID: "ethereum", FetchedAt: at(ago), Stale: true, Batch: price.Batch{Source: price.SourceStale}}
	}
	warn := [2]string{"Warning", `110 - "Response is Stale"`}
	for _, tt := range []struct {
		name    string
		answers []price.Answer
		want    [][2]string
	}{
		{"fresh", []price.Answer{fresh}, nil},
		{"snapshot is not stale", []price.Answer{{FetchedAt: at(time.Minute), Batch: price.Batch{Source: price.SourceSnapshot}}}, nil},
		{"none", nil, nil},
		{"stale 90.9 s", []price.Answer{stale(90*time.Second + 900*time.Millisecond)}, [][2]string{{"X-Price-Stale", "1"}, {"Age", "90"}, warn}},
		{"stale just now", []price.Answer{stale(0)}, [][2]string{{"X-Price-Stale", "1"}, {"Age", "0"}, warn}},
		{"fetched ahead of our clock", []price.Answer{stale(-3 * time.Second)}, [][2]string{{"X-Price-Stale", "1"}, {"Age", "0"}, warn}},
		{"oldest stale of several", []price.Answer{fresh, stale(30 * time.Second), stale(5 * time.Minute), fresh}, [][2]string{{"X-Price-Stale", "1"}, {"Age", "300"}, warn}},
		{"unreadable fetchedAt", []price.Answer{{Stale: true, FetchedAt: "yesterday"}}, [][2]string{{"X-Price-Stale", "1"}, warn}},
	} {
		if got := freshnessHeaders(now, tt.answers...); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestAnswerOfCopiesStale(t *testing.T) {
	r := price.Reply{Status: 200, CoinID: "bitcoin", VsCurrency: "usd", Price: "1.5", FetchedAt: "2026-02-28T03:55:00.000Z",
		Stale: true, Batch: price.Batch{ID: "b", Size: 1, FlushReason: price.FlushWindow, Source: price.SourceStale}}
	raw, err := json.Marshal(answerOf(r))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"coinId":"bitcoin","vsCurrency":"usd","price":1.5,"fetchedAt":"2026-02-28T03:55:00.000Z","stale":true,"batch":{"id":"b","size":1,"flushReason":"window","source":"stale"}}`
	if string(raw) != want {
		t.Errorf("answer\n got %s\nwant %s", raw, want)
	}
	r.Stale, r.Batch.Source = false, price.SourceUpstream
	if raw, _ := json.Marshal(answerOf(r)); strings.Contains(string(raw), "stale\":") {
		t.Errorf("a fresh answer mentions stale: %s", raw)
	}
}

// fakeFetcher answers the gateway's stream entries by coin, as a fetcher
// would (result key, then publish), so the gateway's side of the contract
// can be tested without batching: "stale-coin" is a stale 200 fetched
// staleAge ago, "no-such-coin" a 404, "limited" a CoinGecko 429, "silent" no
// answer at all, anything else a fresh 200.
func fakeFetcher(t *testing.T, rdb *redis.Client, staleAge time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		last := "0"
		for ctx.Err() == nil {
			res, err := rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{price.StreamKey, last}, Block: 100 * time.Millisecond}).Result()
			if err != nil {
				if !errors.Is(err, redis.Nil) && ctx.Err() == nil {
					time.Sleep(20 * time.Millisecond)
				}
				continue
			}
			for _, m := range res[0].Messages {
				last = m.ID
				v := func(k string) string { s, _ := m.Values[k].(string); return s }
				coin := v(price.FieldCoin)
				r := price.Reply{Status: 200, CoinID: coin, VsCurrency: v(price.FieldCurrency), Price: "42.5",
					FetchedAt: time.Now().UTC().Format(price.TimeFormat),
					Batch:     price.Batch{ID: coin + ":1", Size: 1, FlushReason: price.FlushWindow, Source: price.SourceUpstream}}
				switch coin {
				case "silent":
					continue
				case "stale-coin":
					r.Stale, r.Batch.Source = true, price.SourceStale
					r.FetchedAt = time.Now().Add(-staleAge).UTC().Format(price.TimeFormat)
				case "no-such-coin":
					r = price.Reply{Status: 404, Message: "Coin not found", CoinID: coin, Batch: r.Batch}
				case "limited":
					r = price.Reply{Status: 429, Message: "CoinGecko rate limit", RetryAfter: 30_000, CoinID: coin, Batch: r.Batch}
				}
				payload, _ := json.Marshal(r)
				rdb.Set(ctx, price.ResultKey(v(price.FieldRequestID)), payload, time.Minute)
				rdb.Publish(ctx, v(price.FieldReplyTo), payload)
			}
		}
	}()
}

type pricesBody struct {
	price.Prices
	raw []byte
}

// TestPricesAgainstAFetcher drives GET /v1/prices (and the single route's
// stale answer) through a real gateway and Redis, with fakeFetcher answering.
func TestPricesAgainstAFetcher(t *testing.T) {
	base, r := secStart(t, map[string]string{"BATCH_RESULT_TIMEOUT_MS": "1500"})
	rdb := r.Client(t)
	fakeFetcher(t, rdb, 90*time.Second)
	auth := map[string]string{"Authorization": "Bearer " + token(t, "admin")}
	ctx := context.Background()
	xlen := func() int64 { n, _ := rdb.XLen(ctx, price.StreamKey).Result(); return n }
	hits := func() int64 { n, _ := rdb.ZCard(ctx, "cp:throttle:price:user:admin").Result(); return n }
	get := func(t *testing.T, query string) (secResponse, pricesBody) {
		t.Helper()
		got := secGet(t, base+"/v1/prices?"+query, auth)
		var b pricesBody
		if err := json.Unmarshal(got.raw, &b.Prices); err != nil {
			t.Fatalf("%s: %v: %s", query, err, got.raw)
		}
		b.raw = got.raw
		return got, b
	}
	coinsOf := func(b pricesBody) (prices, errs []string) {
		for _, p := range b.Prices.Prices {
			prices = append(prices, p.CoinID)
		}
		for _, e := range b.Errors {
			errs = append(errs, e.CoinID+":"+strconv.Itoa(e.StatusCode))
		}
		return prices, errs
	}

	t.Run("partial success, duplicates folded, one throttle hit", func(t *testing.T) {
		entries, hit := xlen(), hits()
		got, b := get(t, "ids=bitcoin,no-such-coin,ethereum,bitcoin&vsCurrency=usd")
		if got.status != 200 {
			t.Fatalf("status %d: %s", got.status, got.raw)
		}
		ps, es := coinsOf(b)
		if !reflect.DeepEqual(ps, []string{"bitcoin", "ethereum"}) || !reflect.DeepEqual(es, []string{"no-such-coin:404"}) {
			t.Errorf("prices %v errors %v: %s", ps, es, got.raw)
		}
		if b.VsCurrency != "usd" || b.StatusCode != 0 || b.Errors[0].Message != "Coin not found" || b.Errors[0].Batch == nil {
			t.Errorf("body %s", got.raw)
		}
		if p := b.Prices.Prices[0]; p.Price != "42.5" || p.FetchedAt == "" || p.Batch.ID != "bitcoin:1" || p.Stale {
			t.Errorf("price item %+v", p)
		}
		if n := xlen() - entries; n != 3 {
			t.Errorf("stream entries added = %d, want 3 (one per distinct id)", n)
		}
		if n := hits() - hit; n != 1 {
			t.Errorf("throttle hits = %d, want 1", n)
		}
		for _, h := range []string{"X-Price-Stale", "Age", "Warning", "Retry-After"} {
			if v := got.header.Get(h); v != "" {
				t.Errorf("fresh answer carries %s: %q", h, v)
			}
		}
		if v := got.header.Get("X-Ratelimit-Limit"); v == "" {
			t.Errorf("no X-RateLimit-Limit on a throttled route")
		}
	})

	t.Run("a stale item marks the answer stale", func(t *testing.T) {
		got, b := get(t, "ids=bitcoin,stale-coin")
		if got.status != 200 || len(b.Prices.Prices) != 2 {
			t.Fatalf("status %d: %s", got.status, got.raw)
		}
		if b.Prices.Prices[0].Stale || !b.Prices.Prices[1].Stale || b.Prices.Prices[1].Batch.Source != price.SourceStale {
			t.Errorf("stale flags: %s", got.raw)
		}
		age, err := strconv.Atoi(got.header.Get("Age"))
		if got.header.Get("X-Price-Stale") != "1" || err != nil || age < 89 || age > 95 ||
			got.header.Get("Warning") != `110 - "Response is Stale"` {
			t.Errorf("headers X-Price-Stale %q Age %q Warning %q", got.header.Get("X-Price-Stale"), got.header.Get("Age"), got.header.Get("Warning"))
		}
	})

	t.Run("all failed: the most telling status, with timeouts bounded", func(t *testing.T) {
		got, b := get(t, "ids=no-such-coin,silent")
		if got.status != 504 || b.StatusCode != 504 || b.Error != "Gateway Timeout" || len(b.Prices.Prices) != 0 {
			t.Fatalf("status %d: %s", got.status, got.raw)
		}
		if _, err := httperr.DecodeBody(got.raw); err != nil {
			t.Errorf("all-failed body is not also the error shape: %v", err)
		}
		if _, es := coinsOf(b); !reflect.DeepEqual(es, []string{"no-such-coin:404", "silent:504"}) {
			t.Errorf("errors %v", es)
		}
		if got.took < 1400*time.Millisecond || got.took > 3*time.Second {
			t.Errorf("took %s, want about BATCH_RESULT_TIMEOUT_MS (1.5 s)", got.took)
		}
	})

	t.Run("all failed alike keeps the status and message", func(t *testing.T) {
		got, b := get(t, "ids=no-such-coin")
		if got.status != 404 || b.Message != "Coin not found" || b.Error != "Not Found" {
			t.Errorf("status %d: %s", got.status, got.raw)
		}
	})

	t.Run("429 says when to retry", func(t *testing.T) {
		got, b := get(t, "ids=limited,no-such-coin")
		if got.status != 429 || got.header.Get("Retry-After") != "30" {
			t.Errorf("status %d Retry-After %q: %s", got.status, got.header.Get("Retry-After"), got.raw)
		}
		if b.Errors[0].RetryAfter != 30_000 {
			t.Errorf("retryAfterMs: %s", got.raw)
		}
		got, _ = get(t, "ids=limited,bitcoin")
		if got.status != 200 || got.header.Get("Retry-After") != "" || !strings.Contains(string(got.raw), `"retryAfterMs":30000`) {
			t.Errorf("partial 429: status %d Retry-After %q: %s", got.status, got.header.Get("Retry-After"), got.raw)
		}
	})

	t.Run("single route: stale answer headers and body", func(t *testing.T) {
		got := secGet(t, base+"/v1/price/stale-coin", auth)
		if got.status != 200 || !strings.Contains(string(got.raw), `"stale":true`) || !strings.Contains(string(got.raw), `"source":"stale"`) {
			t.Fatalf("status %d: %s", got.status, got.raw)
		}
		if got.header.Get("X-Price-Stale") != "1" || got.header.Get("Age") == "" || got.header.Get("Warning") == "" || got.header.Get("X-Batch-Source") != "stale" {
			t.Errorf("stale headers: %v", got.header)
		}
		got = secGet(t, base+"/v1/price/bitcoin", auth)
		if got.status != 200 || strings.Contains(string(got.raw), `"stale"`) || got.header.Get("X-Batch-Source") != "coingecko" {
			t.Fatalf("fresh: status %d %v: %s", got.status, got.header, got.raw)
		}
		for _, h := range []string{"X-Price-Stale", "Age", "Warning"} {
			if v := got.header.Get(h); v != "" {
				t.Errorf("fresh answer carries %s: %q", h, v)
			}
		}
	})

	t.Run("throttled before anything reaches the stream", func(t *testing.T) {
		// Fill admin's window so the next request is over the limit.
		entries := xlen()
		for hits() < 20 {
			if got := secGet(t, base+"/v1/price/bitcoin", auth); got.status != 200 {
				t.Fatalf("filling the window: %d %s", got.status, got.raw)
			}
			entries = xlen()
		}
		got := secGet(t, base+"/v1/prices?ids=bitcoin,ethereum", auth)
		if got.status != 429 || got.header.Get("Retry-After") == "" || got.header.Get("X-Ratelimit-Remaining") != "0" {
			t.Errorf("status %d %v: %s", got.status, got.header, got.raw)
		}
		if n := xlen(); n != entries {
			t.Errorf("a throttled request reached the stream: XLEN %d, was %d", n, entries)
		}
	})
}

// TestPricesRedisDown: with Redis gone GET /v1/prices is a 503 in the error
// shape within a second, like the single route.
func TestPricesRedisDown(t *testing.T) {
	base, r := secStart(t, nil)
	r.Stop(t)
	got := secGet(t, base+"/v1/prices?ids=bitcoin,ethereum", map[string]string{"Authorization": "Bearer " + token(t, "admin")})
	if got.status != 503 || got.took > time.Second {
		t.Errorf("status %d after %s: %s", got.status, got.took, got.raw)
	}
	if b := secNest(t, got.raw); b.StatusCode != 503 {
		t.Errorf("body %s", got.raw)
	}
}
