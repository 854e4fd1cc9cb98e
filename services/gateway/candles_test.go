package main

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"cryptopulse/libs/httperr"
	"cryptopulse/libs/pricedb"
	"cryptopulse/testkit"
)

// candlesDB is a migrated database holding a few bitcoin prices around the
// 12:00 and 12:01 edges of 2026-03-01, one in euros, and one ethereum price.
func candlesDB(t *testing.T) string {
	t.Helper()
	dbURL := testkit.StartPostgres(t).NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pricedb.Migrate(ctx, dbURL); err != nil {
		t.Fatal(err)
	}
	store, err := pricedb.Open(dbURL, pricedb.Options{PoolSize: 2, QueryTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ts := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	recs := []pricedb.Record{
		{CoinID: "bitcoin", VsCurrency: "usd", Price: "68111.497698873846533", FetchedAt: ts("2026-03-01T12:00:00Z")},
		{CoinID: "bitcoin", VsCurrency: "usd", Price: "68200.5", FetchedAt: ts("2026-03-01T12:00:20.250Z")},
		{CoinID: "bitcoin", VsCurrency: "usd", Price: "68000.25", FetchedAt: ts("2026-03-01T12:00:40.500Z")},
		{CoinID: "bitcoin", VsCurrency: "usd", Price: "68100", FetchedAt: ts("2026-03-01T12:01:00Z")},
		{CoinID: "bitcoin", VsCurrency: "eur", Price: "63000.125", FetchedAt: ts("2026-03-01T12:00:10Z")},
		{CoinID: "ethereum", VsCurrency: "usd", Price: "3412.5", FetchedAt: ts("2026-03-01T12:00:10Z")},
	}
	if _, err := store.Insert(ctx, recs); err != nil {
		t.Fatal(err)
	}
	return dbURL
}

// TestCandlesRoute: the answer a client gets, digits and all, and its pages.
func TestCandlesRoute(t *testing.T) {
	r := testkit.StartRedis(t)
	base := startGateway(t, r.URL(), candlesDB(t), map[string]string{"THROTTLE_GLOBAL_LIMIT": "1000"})
	auth := "Bearer " + token(t, "admin")

	tests := []struct{ name, query, want string }{
		{name: "1m, newest first", query: "interval=1m",
			want: `{"coinId":"bitcoin","vsCurrency":"usd","interval":"1m","items":[` +
				`{"start":"2026-03-01T12:01:00.000Z","open":68100,"high":68100,"low":68100,"close":68100,"count":1,"firstFetchedAt":"2026-03-01T12:01:00.000Z","lastFetchedAt":"2026-03-01T12:01:00.000Z"},` +
				`{"start":"2026-03-01T12:00:00.000Z","open":68111.497698873846533,"high":68200.5,"low":68000.25,"close":68000.25,"count":3,"firstFetchedAt":"2026-03-01T12:00:00.000Z","lastFetchedAt":"2026-03-01T12:00:40.500Z"}` +
				`],"page":1,"limit":20,"totalItems":2,"totalPages":1,"hasNextPage":false}`},
		{name: "second page of one", query: "interval=1m&limit=1&page=2",
			want: `{"coinId":"bitcoin","vsCurrency":"usd","interval":"1m","items":[` +
				`{"start":"2026-03-01T12:00:00.000Z","open":68111.497698873846533,"high":68200.5,"low":68000.25,"close":68000.25,"count":3,"firstFetchedAt":"2026-03-01T12:00:00.000Z","lastFetchedAt":"2026-03-01T12:00:40.500Z"}` +
				`],"page":2,"limit":1,"totalItems":2,"totalPages":2,"hasNextPage":false}`},
		{name: "first page of one has a next", query: "interval=1m&limit=1",
			want: `{"coinId":"bitcoin","vsCurrency":"usd","interval":"1m","items":[` +
				`{"start":"2026-03-01T12:01:00.000Z","open":68100,"high":68100,"low":68100,"close":68100,"count":1,"firstFetchedAt":"2026-03-01T12:01:00.000Z","lastFetchedAt":"2026-03-01T12:01:00.000Z"}` +
				`],"page":1,"limit":1,"totalItems":2,"totalPages":2,"hasNextPage":true}`},
		{name: "1h holds both minutes", query: "interval=1h",
			want: `{"coinId":"bitcoin","vsCurrency":"usd","interval":"1h","items":[` +
				`{"start":"2026-03-01T12:00:00.000Z","open":68111.497698873846533,"high":68200.5,"low":68000.25,"close":68100,"count":4,"firstFetchedAt":"2026-03-01T12:00:00.000Z","lastFetchedAt":"2026-03-01T12:01:00.000Z"}` +
				`],"page":1,"limit":20,"totalItems":1,"totalPages":1,"hasNextPage":false}`},
		{name: "from and to", query: "interval=5m&from=2026-03-01T12:00:20.250Z&to=2026-03-01T12:00:59Z",
			want: `{"coinId":"bitcoin","vsCurrency":"usd","interval":"5m","items":[` +
				`{"start":"2026-03-01T12:00:00.000Z","open":68200.5,"high":68200.5,"low":68000.25,"close":68000.25,"count":2,"firstFetchedAt":"2026-03-01T12:00:20.250Z","lastFetchedAt":"2026-03-01T12:00:40.500Z"}` +
				`],"page":1,"limit":20,"totalItems":1,"totalPages":1,"hasNextPage":false}`},
		{name: "vsCurrency", query: "interval=1d&vsCurrency=eur",
			want: `{"coinId":"bitcoin","vsCurrency":"eur","interval":"1d","items":[` +
				`{"start":"2026-03-01T00:00:00.000Z","open":63000.125,"high":63000.125,"low":63000.125,"close":63000.125,"count":1,"firstFetchedAt":"2026-03-01T12:00:10.000Z","lastFetchedAt":"2026-03-01T12:00:10.000Z"}` +
				`],"page":1,"limit":20,"totalItems":1,"totalPages":1,"hasNextPage":false}`},
		{name: "the last page there can be", query: "interval=1m&limit=100&page=2147483647",
			want: `{"coinId":"bitcoin","vsCurrency":"usd","interval":"1m","items":[],"page":2147483647,"limit":100,"totalItems":2,"totalPages":1,"hasNextPage":false}`},
		{name: "nothing stored", query: "interval=15m&from=2026-03-02",
			want: `{"coinId":"bitcoin","vsCurrency":"usd","interval":"15m","items":[],"page":1,"limit":20,"totalItems":0,"totalPages":0,"hasNextPage":false}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, base+"/v1/price/bitcoin/candles?"+tt.query, auth)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if got := strings.TrimSpace(string(body)); got != tt.want {
				t.Errorf("body\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestCandlesErrors: history's error rules, each 400 naming the parameter,
// and nothing reaches Redis before validation passes.
func TestCandlesErrors(t *testing.T) {
	base, r := secStart(t, map[string]string{"THROTTLE_GLOBAL_LIMIT": "2"})
	auth := map[string]string{"Authorization": "Bearer " + token(t, "admin")}
	bad := func(msgs ...string) httperr.Body {
		list := make([]any, len(msgs))
		for i, m := range msgs {
			list[i] = m
		}
		return httperr.Body{StatusCode: 400, Message: list, Error: "Bad Request"}
	}
	const intervals = "interval must be one of the following values: 1m, 5m, 15m, 1h, 4h, 1d"
	path := "/v1/price/bitcoin/candles?"
	rows := []secRow{
		{name: "no token", path: path + "interval=1m", statusCode: 401, expResp: unauthorized("Missing Authorization header")},
		{name: "no interval", path: path, header: auth, statusCode: 400, expResp: bad(intervals)},
		{name: "unknown interval", path: path + "interval=2m", header: auth, statusCode: 400, expResp: bad(intervals)},
		{name: "interval in another case", path: path + "interval=1M", header: auth, statusCode: 400, expResp: bad(intervals)},
		{name: "limit 0", path: path + "interval=1m&limit=0", header: auth, statusCode: 400, expResp: bad("limit must not be less than 1")},
		{name: "limit 101", path: path + "interval=1m&limit=101", header: auth, statusCode: 400, expResp: bad("limit must not be greater than 100")},
		{name: "limit abc", path: path + "interval=1m&limit=abc", header: auth, statusCode: 400, expResp: bad("limit must be an integer number")},
		{name: "page 0", path: path + "interval=1m&page=0", header: auth, statusCode: 400, expResp: bad("page must not be less than 1")},
		{name: "bad from", path: path + "interval=1m&from=yesterday", header: auth, statusCode: 400, expResp: bad("from must be a valid ISO 8601 date string")},
		{name: "bad to", path: path + "interval=1m&to=2026-13-01", header: auth, statusCode: 400, expResp: bad("to must be a valid ISO 8601 date string")},
		{name: "from after to", path: path + "interval=1m&from=2026-03-02&to=2026-03-01", header: auth, statusCode: 400, expResp: bad("from must not be after to")},
		{name: "unknown parameter", path: path + "interval=1m&sort=asc", header: auth, statusCode: 400, expResp: bad("property sort should not exist")},
		{name: "bad vsCurrency", path: path + "interval=1m&vsCurrency=US%20D", header: auth, statusCode: 400, cmp: func(t *testing.T, got httperr.Body) {
			if list, _ := got.Message.([]any); len(list) != 1 || !strings.Contains(list[0].(string), "vsCurrency") {
				t.Errorf("message %v, want one naming vsCurrency", got.Message)
			}
		}},
		{name: "every problem at once", path: "/v1/price/bitcoin/candles?interval=1w&limit=0&page=x&from=no&x=1", header: auth, statusCode: 400,
			expResp: bad("property x should not exist", intervals, "limit must not be less than 1", "page must be an integer number",
				"from must be a valid ISO 8601 date string")},
	}
	secRun(t, base, rows)
	secNothingInRedis(t, r)

	// Valid queries pass the throttle, and the database (nothing listens at
	// secNoDatabase) answers the 503 of history, until the limit is spent.
	unavailable := httperr.Body{StatusCode: 503, Message: "Price history is unavailable: the database is unreachable", Error: "Service Unavailable"}
	secRun(t, base, []secRow{
		{name: "postgres down", path: path + "interval=1m", header: auth, statusCode: 503, expResp: unavailable},
		{name: "postgres down again", path: path + "interval=1d", header: auth, statusCode: 503, expResp: unavailable},
	})
	got := secGet(t, base+path+"interval=1m", auth)
	if got.status != http.StatusTooManyRequests || got.header.Get("Retry-After") == "" {
		t.Errorf("third request within the limit of 2: %d %v %s, want 429 with Retry-After", got.status, got.header, got.raw)
	}
}

// TestCandleSchemaMatchesTheAnswer: openapi.json's Candle and CandlePage
// require exactly the fields the route sends, and prices are doubles.
func TestCandleSchemaMatchesTheAnswer(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Required   []string                                 `json:"required"`
				Properties map[string]struct{ Type, Format string } `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]any{"Candle": CandleItem{}, "CandlePage": CandlePage{}} {
		var fields []string
		typ := reflect.TypeOf(v)
		for i := range typ.NumField() {
			fields = append(fields, strings.Split(typ.Field(i).Tag.Get("json"), ",")[0])
		}
		schema := doc.Components.Schemas[name]
		var props []string
		for p := range schema.Properties {
			props = append(props, p)
		}
		required := append([]string(nil), schema.Required...)
		sort.Strings(fields)
		sort.Strings(props)
		sort.Strings(required)
		if !reflect.DeepEqual(props, fields) || !reflect.DeepEqual(required, fields) {
			t.Errorf("%s: properties %v, required %v; the answer has %v", name, props, required, fields)
		}
	}
	for _, p := range []string{"open", "high", "low", "close"} {
		if got := doc.Components.Schemas["Candle"].Properties[p]; got.Type != "number" || got.Format != "double" {
			t.Errorf("Candle.%s is %+v, want a number of format double", p, got)
		}
	}
}
