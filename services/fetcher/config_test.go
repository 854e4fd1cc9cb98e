package main

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"cryptopulse/libs/watchlist"
)

func load(t *testing.T, vars map[string]string) (Config, error) {
	t.Helper()
	env := map[string]string{"ENV_FILE": os.DevNull}
	for k, v := range vars {
		env[k] = v
	}
	return loadConfig(func(k string) string { return env[k] })
}

// Watched coins are refreshed by default as often as CoinGecko's cache
// changes a price: a minute on the demo plan, 20 s on a paid one.
func TestWatchRefreshDefaultsToTheUpstreamCacheWindow(t *testing.T) {
	for vars, want := range map[*map[string]string]time.Duration{
		{}:                        time.Minute,
		{"COINGECKO_PLAN": "pro"}: 20 * time.Second,
		{"COINGECKO_BASE_URL": "https://pro-api.coingecko.com"}: 20 * time.Second,
		{"WATCH_REFRESH_MS": "0"}:                               0,
		{"WATCH_REFRESH_MS": "5000"}:                            5 * time.Second,
	} {
		c, err := load(t, *vars)
		if err != nil || c.WatchRefresh != want {
			t.Errorf("%v: refresh %s %v, want %s", *vars, c.WatchRefresh, err, want)
		}
	}
	c, err := load(t, map[string]string{"WATCH_COINS": "bitcoin, ethereum:eur"})
	if want := []watchlist.Coin{{ID: "bitcoin", Currency: "usd"}, {ID: "ethereum", Currency: "eur"}}; err != nil || !reflect.DeepEqual(c.WatchCoins, want) {
		t.Errorf("WATCH_COINS: %v %v, want %v", c.WatchCoins, err, want)
	}
}

func TestBadWatchSettingsStopTheStartNamingThem(t *testing.T) {
	for _, tc := range []struct {
		vars map[string]string
		want string
	}{
		{map[string]string{"WATCH_COINS": "bitcoin,Ethereum"}, `WATCH_COINS`},
		{map[string]string{"WATCH_COINS": "bitcoin:US"}, `WATCH_COINS`},
		{map[string]string{"WATCH_COINS": "bitcoin", "WATCH_REFRESH_MS": "0"}, `WATCH_COINS`},
		{map[string]string{"WATCH_REFRESH_MS": "500"}, `WATCH_REFRESH_MS`},
		{map[string]string{"WATCH_REFRESH_MS": "-1"}, `WATCH_REFRESH_MS`},
	} {
		_, err := load(t, tc.vars)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error naming %s", tc.vars, err, tc.want)
		}
	}
}
