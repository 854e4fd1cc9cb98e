package cgsim

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"
)

// StaleCoinID is the built-in coin whose data stopped updating: its price
// never moves, its 24h change is null and its last_updated_at is old, as
// CoinGecko reports for dead coins.
const StaleCoinID = "bitconnect"

// MaxIDs is the most ids /simple/price accepts before answering 414.
const MaxIDs = 515

// staleUpdatedAt is the frozen last_updated_at of StaleCoinID.
const staleUpdatedAt = 1711356300

// Default and "full" significant digits: 15 matches what CoinGecko sends by
// default (67187.3358936566); 20 is deliberately more than a float64 holds so
// a client that decodes through float64 visibly loses digits.
const (
	defaultSigDigits = 15
	fullSigDigits    = 20
)

// coin is one listed asset and the inputs of its deterministic price model.
type coin struct {
	id, symbol, name string
	baseUSD          string // decimal text, parsed exactly
	supply           int64  // circulating supply, for market cap
	volPPM           int64  // largest move per cache window, parts per million
	stale            bool
}

// builtinCoins returns a fresh copy each call so no package state can be
// mutated through it.
func builtinCoins() []coin {
	return []coin{
		{"bitcoin", "btc", "Bitcoin", "67187.3358936566", 19_680_000, 20_000, false},
		{"ethereum", "eth", "Ethereum", "3456.7812340912", 120_100_000, 25_000, false},
		{"tether", "usdt", "Tether", "1.0003", 110_000_000_000, 1_000, false},
		{"binancecoin", "bnb", "BNB", "585.1243", 147_600_000, 25_000, false},
		{"solana", "sol", "Solana", "172.4531", 445_000_000, 40_000, false},
		{"usd-coin", "usdc", "USDC", "0.9998", 33_000_000_000, 1_000, false},
		{"ripple", "xrp", "XRP", "0.6234", 55_000_000_000, 30_000, false},
		{"dogecoin", "doge", "Dogecoin", "0.16523", 144_000_000_000, 40_000, false},
		{"the-open-network", "ton", "Toncoin", "6.4512", 2_500_000_000, 30_000, false},
		{"cardano", "ada", "Cardano", "0.45871", 35_500_000_000, 30_000, false},
		{"shiba-inu", "shib", "Shiba Inu", "0.00000208", 589_000_000_000_000, 40_000, false},
		{"avalanche-2", "avax", "Avalanche", "35.672", 394_000_000, 35_000, false},
		{"tron", "trx", "TRON", "0.12345", 87_500_000_000, 20_000, false},
		{"polkadot", "dot", "Polkadot", "7.1234", 1_400_000_000, 30_000, false},
		{"chainlink", "link", "Chainlink", "14.562", 587_000_000, 30_000, false},
		{"bitcoin-cash", "bch", "Bitcoin Cash", "478.91", 19_700_000, 30_000, false},
		{"near", "near", "NEAR Protocol", "6.7821", 1_070_000_000, 35_000, false},
		{"matic-network", "matic", "Polygon", "0.71234", 9_900_000_000, 30_000, false},
		{"litecoin", "ltc", "Litecoin", "84.321", 74_600_000, 25_000, false},
		{"internet-computer", "icp", "Internet Computer", "12.345", 464_000_000, 35_000, false},
		{"uniswap", "uni", "Uniswap", "9.8765", 600_000_000, 35_000, false},
		{"dai", "dai", "Dai", "1.0001", 5_300_000_000, 1_000, false},
		{"ethereum-classic", "etc", "Ethereum Classic", "27.81", 147_000_000, 30_000, false},
		{"stellar", "xlm", "Stellar", "0.11234", 29_000_000_000, 25_000, false},
		{"monero", "xmr", "Monero", "165.43", 18_400_000, 20_000, false},
		{"cosmos", "atom", "Cosmos Hub", "8.912", 390_000_000, 30_000, false},
		{"aptos", "apt", "Aptos", "9.123", 440_000_000, 40_000, false},
		{"arbitrum", "arb", "Arbitrum", "1.0234", 2_900_000_000, 40_000, false},
		{"wrapped-bitcoin", "wbtc", "Wrapped Bitcoin", "67150.12", 154_000, 20_000, false},
		{"pepe", "pepe", "Pepe", "0.00000834", 420_690_000_000_000, 50_000, false},
		{StaleCoinID, "bcc", "Bitconnect", "0.00731", 0, 0, true},
	}
}

// builtinCurrencies is the order /simple/supported_vs_currencies lists them
// in; crypto first, as CoinGecko does.
func builtinCurrencies() []string {
	return []string{"btc", "eth", "usd", "eur", "gbp", "jpy"}
}

// fiatUSD is how many US dollars one unit of a fiat currency buys. Fiat rates
// hold still so that only coin prices move, which keeps tests predictable.
func fiatUSD(cur string) (string, bool) {
	switch cur {
	case "usd":
		return "1", true
	case "eur":
		return "1.0852", true
	case "gbp":
		return "1.2671", true
	case "jpy":
		return "0.0066225", true
	}
	return "", false
}

// mustRat parses decimal text the simulator itself wrote or validated.
func mustRat(s string) *big.Rat {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		panic("cgsim: bad built-in decimal " + s)
	}
	return r
}

// validNumber reports whether s is a JSON number that big.Rat can also read,
// because a pinned price is both emitted verbatim and used in conversions.
func validNumber(s string) bool {
	if s == "" || !(s[0] == '-' || (s[0] >= '0' && s[0] <= '9')) {
		return false
	}
	if !json.Valid([]byte(s)) {
		return false
	}
	_, ok := new(big.Rat).SetString(s)
	return ok
}

// windowIndex is which cache window t falls in; floor division keeps
// pre-1970 test clocks consistent.
func windowIndex(t time.Time, window time.Duration) int64 {
	n, w := t.UnixNano(), int64(window)
	q := n / w
	if n%w != 0 && n < 0 {
		q--
	}
	return q
}

// hash64 mixes a coin id, a salt and a window index into a stable number.
func hash64(id, salt string, w int64) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	h.Write([]byte{0})
	h.Write([]byte(salt))
	h.Write([]byte{0})
	h.Write([]byte(strconv.FormatInt(w, 10)))
	return h.Sum64()
}

// moveFactor is the multiplier applied to a coin's base price in window w.
// The move is odd in odd windows and even in even ones, so two neighbouring
// windows can never produce the same price by hash coincidence.
func moveFactor(c coin, w int64) *big.Rat {
	if c.stale || c.volPPM == 0 {
		return big.NewRat(1, 1)
	}
	half := c.volPPM / 2
	k := int64(hash64(c.id, "move", w)%uint64(2*half+1)) - half
	parity := ((w % 2) + 2) % 2
	d := 2*k + parity
	return big.NewRat(1_000_000+d, 1_000_000)
}

// change24h is the coin's 24h change in percent for window w, within ±8 %.
func change24h(c coin, w int64) *big.Rat {
	const span = 800_000_000_000 // 8 % with 11 decimals
	v := int64(hash64(c.id, "change", w)%(2*span+1)) - span
	return big.NewRat(v, 100_000_000_000)
}

// volumeShare is the 24h volume as a share of market cap, 2 % to 10 %.
func volumeShare(c coin, w int64) *big.Rat {
	v := int64(hash64(c.id, "volume", w)%80_001) + 20_000
	return big.NewRat(v, 1_000_000)
}

// syntheticBase gives a coin added at run time a stable, plausible price
// between 0.0001 and 100 USD, so AddCoin alone makes it quotable.
func syntheticBase(id string) string {
	v := hash64(id, "base", 0)%1_000_000 + 1
	return mustRat(strconv.FormatUint(v, 10) + "/10000").FloatString(4)
}

// pow10 returns 10^n as a rational, n may be negative.
func pow10(n int) *big.Rat {
	if n >= 0 {
		return new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil))
	}
	return new(big.Rat).SetFrac(big.NewInt(1), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(-n)), nil))
}

// roundHalfUp rounds a non-negative rational to the nearest integer.
func roundHalfUp(r *big.Rat) *big.Int {
	q, m := new(big.Int).QuoRem(r.Num(), r.Denom(), new(big.Int))
	if new(big.Int).Lsh(m, 1).Cmp(r.Denom()) >= 0 {
		q.Add(q, big.NewInt(1))
	}
	return q
}

// roundDecimals rounds r to n decimal places (half away from zero).
func roundDecimals(r *big.Rat, n int) *big.Rat {
	a := new(big.Rat).Abs(r)
	i := roundHalfUp(a.Mul(a, pow10(n)))
	out := new(big.Rat).SetFrac(i, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil))
	if r.Sign() < 0 {
		out.Neg(out)
	}
	return out
}

// formatNumber writes r with at most sig significant digits the way
// CoinGecko's serializer prints floats: fixed notation with at least one
// decimal ("1.0", "67187.3358936566"), exponent form below 1e-4 or from 1e16
// up ("2.08e-06"). It works on exact rationals so no digit is lost to
// float64 formatting.
func formatNumber(r *big.Rat, sig int) string {
	if r.Sign() == 0 {
		return "0.0"
	}
	a := new(big.Rat).Abs(r)
	// Estimate the decimal exponent from bit lengths, then correct exactly.
	e := int(float64(a.Num().BitLen()-a.Denom().BitLen()) * 0.30102999566398)
	for pow10(e).Cmp(a) > 0 {
		e--
	}
	for pow10(e+1).Cmp(a) <= 0 {
		e++
	}
	n := roundHalfUp(new(big.Rat).Mul(a, pow10(sig-1-e)))
	digits := n.String()
	if len(digits) > sig { // rounding carried into a new digit, e.g. 9.99 -> 10.0
		digits = digits[:sig]
		e++
	}
	digits = strings.TrimRight(digits, "0")

	var b strings.Builder
	if r.Sign() < 0 {
		b.WriteByte('-')
	}
	if e < -4 || e >= 16 {
		b.WriteByte(digits[0])
		b.WriteByte('.')
		if len(digits) > 1 {
			b.WriteString(digits[1:])
		} else {
			b.WriteByte('0')
		}
		b.WriteByte('e')
		if e < 0 {
			b.WriteByte('-')
			e = -e
		} else {
			b.WriteByte('+')
		}
		if e < 10 {
			b.WriteByte('0')
		}
		b.WriteString(strconv.Itoa(e))
		return b.String()
	}
	if e < 0 {
		b.WriteString("0.")
		b.WriteString(strings.Repeat("0", -e-1))
		b.WriteString(digits)
		return b.String()
	}
	if len(digits) <= e+1 {
		b.WriteString(digits)
		b.WriteString(strings.Repeat("0", e+1-len(digits)))
		b.WriteString(".0")
		return b.String()
	}
	b.WriteString(digits[:e+1])
	b.WriteByte('.')
	b.WriteString(digits[e+1:])
	return b.String()
}

// pinKey identifies one pinned price.
type pinKey struct{ id, currency string }

// quote is one coin's price in one currency at one moment.
type quote struct {
	value *big.Rat
	text  string // verbatim pinned text; empty when the value is generated
}

// usdPriceLocked is a coin's USD price in window w, honouring a USD pin.
// The caller holds s.mu.
func (s *Server) usdPriceLocked(c coin, w int64) (*big.Rat, bool) {
	if p, ok := s.pins[pinKey{c.id, "usd"}]; ok {
		return mustRat(p), true
	}
	base, ok := new(big.Rat).SetString(c.baseUSD)
	if !ok {
		return nil, false
	}
	return base.Mul(base, moveFactor(c, w)), true
}

// usdPerUnitLocked is how many USD one unit of cur buys in window w. Crypto
// currencies follow the simulated coins, so bitcoin is always exactly 1 btc.
// The caller holds s.mu.
func (s *Server) usdPerUnitLocked(cur string, w int64) (*big.Rat, bool) {
	if f, ok := fiatUSD(cur); ok {
		return mustRat(f), true
	}
	var id string
	switch cur {
	case "btc":
		id = "bitcoin"
	case "eth":
		id = "ethereum"
	default:
		return nil, false
	}
	c, ok := s.coins[id]
	if !ok {
		return nil, false
	}
	return s.usdPriceLocked(c, w)
}

// quoteLocked prices coin c in cur for window w; false means the currency
// is not supported (the coin then shows up as {}). The caller holds s.mu.
func (s *Server) quoteLocked(c coin, cur string, w int64) (quote, bool) {
	if p, ok := s.pins[pinKey{c.id, cur}]; ok {
		return quote{value: mustRat(p), text: p}, true
	}
	rate, ok := s.usdPerUnitLocked(cur, w)
	if !ok || rate.Sign() == 0 {
		return quote{}, false
	}
	usd, ok := s.usdPriceLocked(c, w)
	if !ok {
		return quote{}, false
	}
	return quote{value: usd.Quo(usd, rate)}, true
}

// supportedCurrenciesLocked is the built-in list plus any currency that only
// exists because a price was pinned in it. The caller holds s.mu.
func (s *Server) supportedCurrenciesLocked() []string {
	out := builtinCurrencies()
	seen := make(map[string]bool, len(out))
	for _, c := range out {
		seen[c] = true
	}
	var extra []string
	for k := range s.pins {
		if !seen[k.currency] {
			seen[k.currency] = true
			extra = append(extra, k.currency)
		}
	}
	slices.Sort(extra)
	return append(out, extra...)
}

// SetPrice pins coin id's price in currency to the given JSON number text.
// The text is sent verbatim (unless the request asks for a precision) in
// every cache window, so tiny or long values reach the client unchanged.
// Pins survive Reset because they describe the market, not the test run.
// Pinning an unknown id lists it as a new coin; pinning "usd" also drives the
// coin's derived prices in the other currencies (and pinning bitcoin or
// ethereum in "usd" moves every "btc" or "eth" quote). Id and currency are
// lower-cased, as the API lower-cases what it receives. A price that is not a
// JSON number panics, because that is a bug in the calling test.
func (s *Server) SetPrice(id, currency string, price string) {
	if err := s.setPrice(id, currency, price); err != nil {
		panic(err)
	}
}

// setPrice is SetPrice with an error for the control route.
func (s *Server) setPrice(id, currency, price string) error {
	id = strings.ToLower(strings.TrimSpace(id))
	currency = strings.ToLower(strings.TrimSpace(currency))
	price = strings.TrimSpace(price)
	if id == "" || currency == "" {
		return fmt.Errorf("id and currency are required")
	}
	if !validNumber(price) {
		return fmt.Errorf("price %q is not a JSON number", price)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.coins[id]; !ok {
		s.addCoinLocked(id, id, id)
	}
	s.pins[pinKey{id, currency}] = price
	return nil
}

// AddCoin lists a coin (or renames an existing one). A new coin gets a stable
// synthetic price so it can be quoted at once; SetPrice overrides it.
func (s *Server) AddCoin(id, symbol, name string) {
	id = strings.ToLower(strings.TrimSpace(id))
	if id == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addCoinLocked(id, symbol, name)
}

// addCoinLocked does AddCoin's work; the caller holds s.mu.
func (s *Server) addCoinLocked(id, symbol, name string) {
	if c, ok := s.coins[id]; ok {
		c.symbol, c.name = symbol, name
		s.coins[id] = c
		return
	}
	s.coins[id] = coin{
		id: id, symbol: symbol, name: name,
		baseUSD: syntheticBase(id),
		supply:  1_000_000_000,
		volPPM:  30_000,
	}
}
