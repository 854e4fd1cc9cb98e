// Package price is the contract between gateways and fetchers: what a price
// request looks like on the Redis stream, where its answer goes, and what
// that answer says. Both sides import it, so the names a user sees with
// redis-cli are defined in exactly one place.
package price

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Redis names. Every key CryptoPulse writes starts with "cp:".
const (
	// StreamKey is the stream gateways add price requests to.
	StreamKey = "cp:price:requests"
	// Group is the consumer group every fetcher reads the stream through.
	Group = "fetchers"
	// RecordsStream holds fetched prices until a fetcher has written them to
	// Postgres, so an outage of Postgres loses none.
	RecordsStream = "cp:price:records"
	// RecordsGroup is the consumer group that writes RecordsStream to Postgres.
	RecordsGroup = "persisters"
	// ReplyPrefix starts every reply channel: PSUBSCRIBE cp:price:reply:* shows them all.
	ReplyPrefix = "cp:price:reply:"
	// ResultPrefix starts the key that keeps a reply for a listener that missed the publish.
	ResultPrefix = "cp:price:result:"
)

// Stream entry fields: flat and readable in XRANGE.
const (
	FieldRequestID = "request_id"
	FieldCoin      = "coin"
	FieldCurrency  = "currency"
	FieldReplyTo   = "reply_to"
	FieldTimeoutMS = "timeout_ms"
	FieldGateway   = "gateway"
)

// ReplyChannel is the channel a request's answer is published on. The
// gateway's instance id is part of it so each gateway subscribes once to
// its own pattern instead of once per request.
func ReplyChannel(gateway, requestID string) string {
	return ReplyPrefix + gateway + ":" + requestID
}

// ReplyPattern matches every reply channel of one gateway.
func ReplyPattern(gateway string) string { return ReplyPrefix + gateway + ":*" }

// ResultKey is where a request's answer is kept for a short while.
func ResultKey(requestID string) string { return ResultPrefix + requestID }

var (
	coinIDRe   = regexp.MustCompile(`^[a-z0-9]+(?:-[a-z0-9]+)*$`)
	currencyRe = regexp.MustCompile(`^[a-z]{2,10}$`)
	gatewayRe  = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	tokenRe    = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
)

// MaxCoinIDLen bounds a coin id; CoinGecko's longest are well under it.
const MaxCoinIDLen = 100

// ErrInvalidCoinID and ErrInvalidCurrency are returned by the validators.
var (
	ErrInvalidCoinID   = errors.New("coinId must be 1-100 lowercase letters, digits or single hyphens (a CoinGecko id such as usd-coin)")
	ErrInvalidCurrency = errors.New("vsCurrency must be 2-10 lowercase letters (such as usd)")
)

// ValidateCoinID checks a coin id before anything touches Redis.
func ValidateCoinID(id string) error {
	if len(id) == 0 || len(id) > MaxCoinIDLen || !coinIDRe.MatchString(id) {
		return ErrInvalidCoinID
	}
	return nil
}

// ValidateCurrency checks a quote currency such as "usd".
func ValidateCurrency(c string) error {
	if !currencyRe.MatchString(c) {
		return ErrInvalidCurrency
	}
	return nil
}

// ValidInstanceID reports whether id can be part of a channel name.
func ValidInstanceID(id string) bool { return gatewayRe.MatchString(id) }

// Request is one client's ask for a price, as it travels on the stream.
type Request struct {
	ID        string
	Coin      string
	Currency  string
	ReplyTo   string
	TimeoutMS int64
	Gateway   string
}

// Validate reports the first problem with r.
func (r Request) Validate() error {
	if err := ValidateCoinID(r.Coin); err != nil {
		return err
	}
	if err := ValidateCurrency(r.Currency); err != nil {
		return err
	}
	if !tokenRe.MatchString(r.ID) || !strings.HasPrefix(r.ReplyTo, ReplyPrefix) || strings.ContainsAny(r.ReplyTo, " \t\r\n") {
		return fmt.Errorf("request %q: id and reply channel must be single words, the channel under %s", r.ID, ReplyPrefix)
	}
	if r.TimeoutMS <= 0 {
		return fmt.Errorf("request %q: timeout_ms must be positive", r.ID)
	}
	return nil
}

// Values are the stream fields for r, in a stable order.
func (r Request) Values() []any {
	return []any{
		FieldRequestID, r.ID,
		FieldCoin, r.Coin,
		FieldCurrency, r.Currency,
		FieldReplyTo, r.ReplyTo,
		FieldTimeoutMS, r.TimeoutMS,
		FieldGateway, r.Gateway,
	}
}

// Flush reasons, as a client sees them in a price answer.
const (
	FlushThreshold = "threshold"
	FlushWindow    = "window"
	// FlushRefresh marks a watched coin's refresh, which no request waited for.
	FlushRefresh = "refresh"
)

// Where a batch's price came from, as a client sees it in batch.source.
const (
	// SourceUpstream is a price fetched from CoinGecko for this batch.
	SourceUpstream = "coingecko"
	// SourceSnapshot is a price fetched for an earlier batch less than
	// PRICE_MAX_AGE_MS ago, reused without a call.
	SourceSnapshot = "snapshot"
	// SourceStale is the newest stored price, given because CoinGecko
	// failed and it is younger than STALE_MAX_AGE_MS.
	SourceStale = "stale"
	// SourceFeed is a gateway's own copy of a coin's newest price, taken
	// from the price update feed and younger than the gateway's
	// PRICE_MAX_AGE_MS: a hot read answered without a batch.
	SourceFeed = "feed"
	// SourceRefresh is a price fetched for nobody's request, to keep a
	// watched coin fresh (WATCH_REFRESH_MS): it goes to the feed and to
	// Postgres only.
	SourceRefresh = "refresh"
)

// Batch says which batch answered a request.
type Batch struct {
	ID   string `json:"id"`
	Size int    `json:"size"`
	// FlushReason is empty, and left out, for a request turned away
	// before its batch flushed (the upstream budget was spent).
	FlushReason string `json:"flushReason,omitempty"`
	Fetcher     string `json:"fetcher,omitempty"`
	Attempt     int    `json:"attempt,omitempty"`
	// Source is SourceUpstream, SourceSnapshot, SourceStale, SourceFeed or
	// SourceRefresh.
	Source string `json:"source,omitempty"`
}

// Reply is what a fetcher publishes for every request of a batch. Status is
// the HTTP status the gateway answers with; Message explains a failure.
type Reply struct {
	Status     int         `json:"status"`
	Message    string      `json:"message,omitempty"`
	RetryAfter int64       `json:"retryAfterMs,omitempty"`
	CoinID     string      `json:"coinId"`
	VsCurrency string      `json:"vsCurrency"`
	Price      json.Number `json:"price,omitempty"`
	FetchedAt  string      `json:"fetchedAt,omitempty"`
	// Stale marks a stored price given because the upstream failed.
	Stale bool  `json:"stale,omitempty"`
	Batch Batch `json:"batch"`
}

// Answer is the 200 body of GET /v1/price/{coinId}.
type Answer struct {
	CoinID     string      `json:"coinId"`
	VsCurrency string      `json:"vsCurrency"`
	Price      json.Number `json:"price"`
	FetchedAt  string      `json:"fetchedAt"`
	// Stale is true only on a stored price served because CoinGecko
	// failed (STALE_MAX_AGE_MS); a fresh price never carries it.
	Stale bool  `json:"stale,omitempty"`
	Batch Batch `json:"batch"`
}

// TimeFormat is the fetchedAt format: JavaScript's toISOString, as the original sent.
const TimeFormat = "2006-01-02T15:04:05.000Z"

// CoinError is one coin's failure in the body of GET /v1/prices: the status
// and message GET /v1/price/{coinId} would have answered with.
type CoinError struct {
	CoinID     string `json:"coinId"`
	StatusCode int    `json:"statusCode"`
	Message    string `json:"message"`
	// RetryAfter is how long to wait before asking again, when the failure
	// says (a 429, ours or CoinGecko's).
	RetryAfter int64 `json:"retryAfterMs,omitempty"`
	// Batch is the batch that failed, when one answered at all.
	Batch *Batch `json:"batch,omitempty"`
}

// Prices is the body of GET /v1/prices: one Answer per coin that has a
// price and one CoinError per coin that failed, each coin once, in the
// order the ids were first named.
type Prices struct {
	// StatusCode, Message and Error are set only when every coin failed, so
	// that body is also the error shape every other route answers with.
	StatusCode int         `json:"statusCode,omitempty"`
	Message    string      `json:"message,omitempty"`
	Error      string      `json:"error,omitempty"`
	VsCurrency string      `json:"vsCurrency"`
	Prices     []Answer    `json:"prices"`
	Errors     []CoinError `json:"errors"`
}
