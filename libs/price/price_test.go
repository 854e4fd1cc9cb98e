package price_test

import (
	"errors"
	"strings"
	"testing"

	"cryptopulse/libs/price"
)

func TestValidateCoinID(t *testing.T) {
	table := []struct {
		name string
		id   string
		ok   bool
	}{
		{"plain", "bitcoin", true},
		{"hyphenated", "usd-coin", true},
		{"several hyphens", "wrapped-bitcoin-bsc", true},
		{"digits", "0x", true},
		{"digits only", "1337", true},
		{"one char", "a", true},
		{"100 chars", strings.Repeat("a", 100), true},
		{"100 chars hyphenated", strings.Repeat("ab-", 33) + "a", true},

		{"empty", "", false},
		{"uppercase", "Bitcoin", false},
		{"all caps", "BTC", false},
		{"space", "bit coin", false},
		{"percent-encoded space", "bit%20coin", false},
		{"underscore", "bit_coin", false},
		{"dot dot", "..", false},
		{"dots inside", "bit..coin", false},
		{"dot", "bitcoin.eth", false},
		{"slash", "bit/coin", false},
		{"backslash", `bit\coin`, false},
		{"leading hyphen", "-bitcoin", false},
		{"trailing hyphen", "bitcoin-", false},
		{"double hyphen", "bit--coin", false},
		{"hyphen only", "-", false},
		{"101 chars", strings.Repeat("a", 101), false},
		{"unicode letter", "bitcoín", false},
		{"cyrillic a", "bitcoin\u0430", false},
		{"fullwidth digit", "coin\uff11", false},
		{"trailing newline", "bitcoin\n", false},
		{"leading newline", "\nbitcoin", false},
		{"NUL", "bitcoin\x00", false},
		{"redis glob", "bit*", false},
		{"colon", "cp:price", false},
		{"query", "bitcoin?x=1", false},
		{"invalid UTF-8", "bit\xffcoin", false},
	}
	for _, tt := range table {
		t.Run(tt.name, func(t *testing.T) {
			err := price.ValidateCoinID(tt.id)
			if tt.ok && err != nil {
				t.Errorf("ValidateCoinID(%q) = %v, want nil", tt.id, err)
			}
			if !tt.ok && !errors.Is(err, price.ErrInvalidCoinID) {
				t.Errorf("ValidateCoinID(%q) = %v, want ErrInvalidCoinID", tt.id, err)
			}
		})
	}
	if !strings.HasPrefix(price.ErrInvalidCoinID.Error(), "coinId ") {
		t.Errorf("message %q does not name coinId", price.ErrInvalidCoinID)
	}
}

func TestValidateCurrency(t *testing.T) {
	for id, ok := range map[string]bool{
		"usd": true, "eur": true, "btc": true, "sats": true, "ab": true, "abcdefghij": true,
		"": false, "a": false, "USD": false, "us-d": false, "u5d": false, "abcdefghijk": false, "usd\n": false,
	} {
		if err := price.ValidateCurrency(id); (err == nil) != ok {
			t.Errorf("ValidateCurrency(%q) = %v, want ok=%v", id, err, ok)
		}
	}
}

func TestValidInstanceID(t *testing.T) {
	for id, ok := range map[string]bool{
		"gw-1": true, "gateway_2.local": true, strings.Repeat("x", 64): true,
		"": false, "gw 1": false, "gw:1": false, "gw*": false, strings.Repeat("x", 65): false,
	} {
		if got := price.ValidInstanceID(id); got != ok {
			t.Errorf("ValidInstanceID(%q) = %v, want %v", id, got, ok)
		}
	}
}

func TestRequestValidate(t *testing.T) {
	good := price.Request{
		ID: "abc123", Coin: "bitcoin", Currency: "usd",
		ReplyTo: price.ReplyChannel("gw-1", "abc123"), TimeoutMS: 8000, Gateway: "gw-1",
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid request: %v", err)
	}
	table := []struct {
		name   string
		change func(*price.Request)
	}{
		{"bad coin", func(r *price.Request) { r.Coin = "Bitcoin" }},
		{"bad currency", func(r *price.Request) { r.Currency = "US" }},
		{"empty id", func(r *price.Request) { r.ID = "" }},
		{"id with space", func(r *price.Request) { r.ID = "a b" }},
		{"reply outside the prefix", func(r *price.Request) { r.ReplyTo = "other:channel" }},
		{"reply with newline", func(r *price.Request) { r.ReplyTo = price.ReplyPrefix + "gw\n1" }},
		{"zero timeout", func(r *price.Request) { r.TimeoutMS = 0 }},
		{"negative timeout", func(r *price.Request) { r.TimeoutMS = -1 }},
	}
	for _, tt := range table {
		t.Run(tt.name, func(t *testing.T) {
			r := good
			tt.change(&r)
			if err := r.Validate(); err == nil {
				t.Errorf("Validate(%+v) = nil, want an error", r)
			}
		})
	}
}

func TestNames(t *testing.T) {
	if got := price.ReplyChannel("gw-1", "r1"); got != "cp:price:reply:gw-1:r1" {
		t.Errorf("ReplyChannel = %q", got)
	}
	if got := price.ReplyPattern("gw-1"); got != "cp:price:reply:gw-1:*" {
		t.Errorf("ReplyPattern = %q", got)
	}
	if got := price.ResultKey("r1"); got != "cp:price:result:r1" {
		t.Errorf("ResultKey = %q", got)
	}
	// The names docs/redis.md's redis-cli tour shows.
	for got, want := range map[string]string{
		price.BatchKey("bitcoin:usd:1-1"):         "cp:batch:bitcoin:usd:1-1",
		price.BatchRequestsKey("bitcoin:usd:1-1"): "cp:batch:bitcoin:usd:1-1:requests",
		price.OpenBatchKey("bitcoin", "usd"):      "cp:batch:open:bitcoin:usd",
		price.LastPriceKey("bitcoin", "usd"):      "cp:price:last:bitcoin:usd",
	} {
		if got != want {
			t.Errorf("key %q, want %q", got, want)
		}
	}
	for _, k := range []string{price.StreamKey, price.RecordsStream, price.ReplyPrefix, price.ResultPrefix,
		price.DueKey, price.SeqKey, price.WakeChannel, price.CooldownKey, price.BudgetKey} {
		if !strings.HasPrefix(k, "cp:") {
			t.Errorf("%q does not start with cp:", k)
		}
	}
	vals := price.Request{ID: "i", Coin: "c", Currency: "usd", ReplyTo: "r", TimeoutMS: 5, Gateway: "g"}.Values()
	want := []any{"request_id", "i", "coin", "c", "currency", "usd", "reply_to", "r", "timeout_ms", int64(5), "gateway", "g"}
	if len(vals) != len(want) {
		t.Fatalf("Values = %v", vals)
	}
	for i := range want {
		if vals[i] != want[i] {
			t.Errorf("Values[%d] = %v, want %v", i, vals[i], want[i])
		}
	}
}
