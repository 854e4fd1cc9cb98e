package throttle

import (
	"context"
	"testing"
	"time"

	"cryptopulse/testkit"
)

// Two hits in the same microsecond must both be logged. Allow refuses two
// rules on one key, so the script is run directly with one key twice: both
// ZADDs then share a TIME stamp, the collision a plain ZADD would lose.
func TestScriptKeepsHitsOfTheSameMicrosecond(t *testing.T) {
	r := testkit.StartRedis(t)
	rdb := r.Client(t)
	ctx := context.Background()
	l := New(rdb)

	key := "cp:throttle:test:same-microsecond"
	window := (time.Minute).Microseconds()
	res, err := l.script.Run(ctx, rdb, []string{key, key}, 10, window, 10, window).Int64Slice()
	if err != nil {
		t.Fatal(err)
	}
	if res[0] != 1 {
		t.Fatalf("allowed = %d, want 1 (reply %v)", res[0], res)
	}
	zs, err := rdb.ZRangeWithScores(ctx, key, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(zs) != 2 {
		t.Fatalf("log holds %d hits, want 2: %v", len(zs), zs)
	}
	if zs[0].Score != zs[1].Score || zs[0].Member == zs[1].Member {
		t.Fatalf("want two members with one score, got %v", zs)
	}
}
