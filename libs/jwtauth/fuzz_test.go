package jwtauth_test

import (
	"testing"
	"time"

	"cryptopulse/libs/jwtauth"
)

// FuzzParseExpiresIn: whatever JWT_EXPIRES_IN says, the lifetime accepted is
// positive and at most a year (366 days), so a typo can never make every
// token born expired or nearly eternal. Run longer with
//
//	go test -run='^$' -fuzz='^FuzzParseExpiresIn$' -fuzztime=30s ./libs/jwtauth
func FuzzParseExpiresIn(f *testing.F) {
	for _, s := range []string{"1h", "3600", "15m", "7d", "2w", "0", "-1h", "1x", "", " 1h ", "366d", "53w", "31536000w", "15250285w", "9223372036854775807s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := jwtauth.ParseExpiresIn(s)
		if err != nil {
			if d != 0 {
				t.Fatalf("ParseExpiresIn(%q) = %v with error %v", s, d, err)
			}
			return
		}
		if d <= 0 || d > 366*24*time.Hour {
			t.Fatalf("ParseExpiresIn(%q) = %v, want within (0, 366 days]", s, d)
		}
		if d%time.Second != 0 {
			t.Fatalf("ParseExpiresIn(%q) = %v, not whole seconds", s, d)
		}
	})
}
