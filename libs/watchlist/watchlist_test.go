package watchlist

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"cryptopulse/libs/price"
	"cryptopulse/testkit"
)

func TestParseReadsCoinsWithAnOptionalCurrency(t *testing.T) {
	got, err := Parse(" bitcoin, ethereum:eur ,,usd-coin, bitcoin:usd")
	want := []Coin{{"bitcoin", "usd"}, {"ethereum", "eur"}, {"usd-coin", "usd"}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Parse = %v %v, want %v", got, err, want)
	}
	if got, err := Parse(""); err != nil || len(got) != 0 {
		t.Errorf("empty list: %v %v", got, err)
	}
}

func TestParseNamesTheBadEntry(t *testing.T) {
	for list, want := range map[string]error{
		"bitcoin,Ethereum":  price.ErrInvalidCoinID,
		"bitcoin:US":        price.ErrInvalidCurrency,
		"bitcoin:":          price.ErrInvalidCurrency,
		":usd":              price.ErrInvalidCoinID,
		"bitcoin:usd:extra": price.ErrInvalidCurrency,
	} {
		if _, err := Parse(list); !errors.Is(err, want) {
			t.Errorf("Parse(%q) = %v, want %v", list, err, want)
		}
	}
}

// A registration lasts its ttl on the Redis clock, a renewal never
// shortens another owner's longer one, and expired members leave the set.
func TestRegistrationsExpireUnlessRenewed(t *testing.T) {
	rdb := testkit.StartRedis(t).Client(t)
	ctx := context.Background()
	if n, err := Register(ctx, rdb, time.Hour, "bitcoin:usd"); err != nil || n != 1 {
		t.Fatalf("Register = %d %v", n, err)
	}
	long := rdb.ZScore(ctx, price.WatchKey, "bitcoin:usd").Val()
	if _, err := Register(ctx, rdb, 300*time.Millisecond, "bitcoin:usd", "ethereum:eur"); err != nil {
		t.Fatal(err)
	}
	if s := rdb.ZScore(ctx, price.WatchKey, "bitcoin:usd").Val(); s != long {
		t.Errorf("a shorter registration moved bitcoin's expiry from %v to %v", long, s)
	}
	time.Sleep(400 * time.Millisecond)
	if n, err := Register(ctx, rdb, time.Hour); err != nil || n != 1 {
		t.Errorf("after ethereum's registration ran out: %d watched (%v), want 1", n, err)
	}
	if m := rdb.ZRange(ctx, price.WatchKey, 0, -1).Val(); !reflect.DeepEqual(m, []string{"bitcoin:usd"}) {
		t.Errorf("watched = %v", m)
	}
	if c, ok := ParseMember("ethereum:eur"); !ok || c != (Coin{"ethereum", "eur"}) {
		t.Errorf("ParseMember = %v %v", c, ok)
	}
}
