package main

import (
	"strings"
	"testing"
	"time"
)

func TestDBQueryTimeoutSetting(t *testing.T) {
	for raw, want := range map[string]time.Duration{"": 2 * time.Second, "500": 500 * time.Millisecond, "60000": time.Minute} {
		cfg, err := loadConfig(func(k string) string { return env(map[string]string{"DB_QUERY_TIMEOUT_MS": raw})[k] })
		if err != nil || cfg.DBQueryTimeout != want {
			t.Errorf("DB_QUERY_TIMEOUT_MS=%q: %s, %v; want %s", raw, cfg.DBQueryTimeout, err, want)
		}
	}
	// Under 100 ms a busy but healthy Postgres would fail queries; over a
	// minute is longer than any proxy or client waits.
	for _, raw := range []string{"0", "50", "60001", "2s", "-1"} {
		_, err := loadConfig(func(k string) string { return env(map[string]string{"DB_QUERY_TIMEOUT_MS": raw})[k] })
		if err == nil || !strings.Contains(err.Error(), "DB_QUERY_TIMEOUT_MS") {
			t.Errorf("DB_QUERY_TIMEOUT_MS=%q: %v, want an error naming the variable", raw, err)
		}
	}
}
