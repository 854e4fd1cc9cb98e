package price_test

import (
	"errors"
	"testing"

	"cryptopulse/libs/price"
)

// grammarOK is the documented coinId grammar, written out by hand rather
// than as the validator's regular expression: 1 to 100 bytes of lowercase
// ASCII letters, digits and hyphens, where a hyphen sits between two
// letters or digits (no leading, trailing or doubled hyphen).
func grammarOK(id string) bool {
	if len(id) < 1 || len(id) > price.MaxCoinIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case c == '-':
			if i == 0 || i == len(id)-1 || id[i-1] == '-' {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// FuzzCoinID checks that ValidateCoinID accepts exactly the documented
// grammar, rejects with ErrInvalidCoinID, and never panics. Seeds are in
// testdata/fuzz/FuzzCoinID. Run longer with
//
//	go test -run='^$' -fuzz='^FuzzCoinID$' -fuzztime=30s ./libs/price
func FuzzCoinID(f *testing.F) {
	f.Fuzz(func(t *testing.T, id string) {
		err := price.ValidateCoinID(id)
		if want := grammarOK(id); (err == nil) != want {
			t.Fatalf("ValidateCoinID(%q) = %v; the grammar says valid=%v", id, err, want)
		}
		if err != nil && !errors.Is(err, price.ErrInvalidCoinID) {
			t.Fatalf("ValidateCoinID(%q) = %v, want ErrInvalidCoinID", id, err)
		}
	})
}
