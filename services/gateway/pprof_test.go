package main

import (
	"strings"
	"testing"
)

func TestPprofAddrMustBeLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{
		"": true, "127.0.0.1:6060": true, "127.0.0.1:0": true, "[::1]:6060": true, "localhost:6060": true,
		"0.0.0.0:6060": false, ":6060": false, "10.0.0.5:6060": false, "127.0.0.1": false, "example.com:6060": false,
	} {
		_, err := loadConfig(func(k string) string { return env(map[string]string{"PPROF_ADDR": addr})[k] })
		if (err == nil) != ok {
			t.Errorf("PPROF_ADDR=%q: err %v, want ok=%v", addr, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "PPROF_ADDR") {
			t.Errorf("PPROF_ADDR=%q: error %v does not name the variable", addr, err)
		}
	}
}

// The profiles are never on the API port, whatever PPROF_ADDR says.
func TestPprofIsNotOnTheAPIPort(t *testing.T) {
	base, _ := secStart(t, map[string]string{"PPROF_ADDR": "127.0.0.1:0"})
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/profile?seconds=1"} {
		if got := secGet(t, base+p, nil); got.status != 404 {
			t.Errorf("GET %s on the API port: %d, want 404", p, got.status)
		}
	}
}
