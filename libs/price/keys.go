package price

// The fetchers' shared batching state, named here with the stream and reply
// names (price.go) so that the Lua scripts, the fetcher, the chaos drain
// check and the tests spell each name once. The batching scripts receive
// the prefixes through a preamble built from these constants
// (services/fetcher/internal/batch/scripts.go).
const (
	// BatchPrefix starts each batch's hash, cp:batch:<id>, and its request
	// list, cp:batch:<id>:requests.
	BatchPrefix = "cp:batch:"
	// BatchRequestsSuffix ends a batch's request list.
	BatchRequestsSuffix = ":requests"
	// OpenBatchPrefix starts cp:batch:open:<coin>:<currency>, the id of the
	// coin's batch still taking requests.
	OpenBatchPrefix = "cp:batch:open:"
	// DueKey is the sorted set of batch ids by when each is due, or when its
	// flusher's lease ends.
	DueKey = "cp:batch:due"
	// SeqKey counts batch ids.
	SeqKey = "cp:batch:seq"
	// WakeChannel carries "<due ms> <redis now ms>" whenever a batch comes
	// due sooner than the fetchers' timers know: a new batch, a late
	// request. A batch due at once is claimed by the fetcher that filled it.
	WakeChannel = "cp:batch:wake"
	// CooldownKey holds, while it exists, CoinGecko's last "wait before
	// asking again": every fetcher honours it.
	CooldownKey = "cp:upstream:cooldown"
	// BudgetKey is the shared upstream budget's GCRA state.
	BudgetKey = "cp:upstream:budget"
	// LastPricePrefix starts the hash of each coin's newest fetched price,
	// cp:price:last:<coin>:<currency>.
	LastPricePrefix = "cp:price:last:"
	// WatchKey is the sorted set of watched coins, "<coin>:<currency>",
	// each scored by when (Redis time, ms) its registration expires: the
	// gateways' streamed coins and the fetchers' WATCH_COINS, renewed while
	// they are watched (libs/watchlist).
	WatchKey = "cp:watch:coins"
	// RefreshClaimPrefix starts cp:watch:claim:<coin>:<currency>, held (with
	// the fetcher's name, for a lease) by the one fetcher refreshing that
	// coin right now.
	RefreshClaimPrefix = "cp:watch:claim:"
)

// BatchKey is the hash of batch id.
func BatchKey(id string) string { return BatchPrefix + id }

// BatchRequestsKey is the list of batch id's requests.
func BatchRequestsKey(id string) string { return BatchPrefix + id + BatchRequestsSuffix }

// OpenBatchKey holds the id of the batch of coin in currency still taking
// requests.
func OpenBatchKey(coin, currency string) string { return OpenBatchPrefix + coin + ":" + currency }

// LastPriceKey is where the newest fetched price of coin in currency is kept.
func LastPriceKey(coin, currency string) string { return LastPricePrefix + coin + ":" + currency }

// RefreshClaimKey is held by the fetcher refreshing coin in currency.
func RefreshClaimKey(coin, currency string) string { return RefreshClaimPrefix + coin + ":" + currency }
