package pricereq

import (
	"context"
	"testing"
	"time"

	"cryptopulse/libs/price"
	"cryptopulse/testkit"
)

// Every request goes out valid, answered on this gateway's channel, and the
// stream stays near its cap however many are added.
func TestAddTrimsTheStream(t *testing.T) {
	rdb := testkit.StartRedis(t).Client(t)
	ctx := context.Background()
	pub, err := New("gw-1", 8*time.Second, 100)
	if err != nil {
		t.Fatal(err)
	}
	pipe := rdb.Pipeline()
	for range 1000 {
		r := pub.Request("bitcoin", "usd")
		if err := r.Validate(); err != nil {
			t.Fatalf("request %+v: %v", r, err)
		}
		pub.Add(ctx, pipe, r)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	// MAXLEN ~ trims whole stream nodes (100 entries each by default).
	if n := rdb.XLen(ctx, price.StreamKey).Val(); n < 100 || n > 300 {
		t.Fatalf("stream holds %d entries after 1000 adds with maxlen ~100", n)
	}
	last, err := rdb.XRevRangeN(ctx, price.StreamKey, "+", "-", 1).Result()
	if err != nil || len(last) != 1 {
		t.Fatalf("newest entry: %v %v", last, err)
	}
	v := last[0].Values
	if v[price.FieldGateway] != "gw-1" || v[price.FieldTimeoutMS] != "8000" || v[price.FieldReplyTo] != price.ReplyChannel("gw-1", v[price.FieldRequestID].(string)) {
		t.Fatalf("entry %v", v)
	}
	if e := pub.Entry(pub.Request("tron", "eur")); e.Stream != price.StreamKey || e.MaxLen != 100 {
		t.Fatalf("throttle entry %+v: want the same stream and cap", e)
	}
}

func TestNewRejectsAnUntrimmedStream(t *testing.T) {
	if _, err := New("gw-1", time.Second, 0); err == nil {
		t.Fatal("maxlen 0 accepted")
	}
	if _, err := New("gw 1", time.Second, 100); err == nil {
		t.Fatal("a gateway id with a space accepted")
	}
}
