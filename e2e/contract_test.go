package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// contract is the API document as a client loads it from /docs-json, and
// the answers checked against it so far.
type contract struct {
	doc    *openapi3.T
	router routers.Router

	mu   sync.Mutex
	seen map[string]map[int]bool // "METHOD /path" to statuses seen
}

// loadContract loads the document a stack serves and validates it as an
// OpenAPI 3 document.
func loadContract(t *testing.T, base string) *contract {
	t.Helper()
	resp, err := http.Get(base + "/docs-json")
	if err != nil {
		t.Fatalf("GET /docs-json: %v", err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /docs-json: %d %v", resp.StatusCode, err)
	}
	return parseContract(t, raw)
}

// parseContract reads and validates an OpenAPI 3 document.
func parseContract(t *testing.T, raw []byte) *contract {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(raw)
	if err != nil {
		t.Fatalf("load the document: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("not a valid OpenAPI 3 document: %v", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("route the document: %v", err)
	}
	return &contract{doc: doc, router: router, seen: map[string]map[int]bool{}}
}

// docSays is what a call's request is to the document.
type docSays int

const (
	// unchecked: the answer is not about the request's form (401, 404,
	// 429, 5xx, what nginx refuses before any service reads it).
	unchecked docSays = iota
	// accepts: the document allows the request (every 2xx row).
	accepts
	// refuses: the document forbids the request, as the server does.
	refuses
	// inProse: the server refuses it and the document says so in words
	// only: unknown query parameters, from after to, more than 50
	// distinct ids (a schema cannot count distinct values).
	inProse
)

// call is one request and what must come of it.
type call struct {
	name   string
	method string // GET when empty
	path   string
	header map[string]string
	body   string
	// status is the answer expected.
	status int
	// request says whether the document accepts the request; a 2xx means
	// it must, and a 400 must say which.
	request docSays
	// byNginx: nginx answered itself, so no X-Instance-Id.
	byNginx bool
	// says is a substring the body must contain, when set.
	says string
}

// got is the answer to a call.
type got struct {
	status int
	header http.Header
	raw    []byte
}

func newRequest(method, target, body string, header map[string]string) (*http.Request, error) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, target, r)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		if v != "" { // an empty value leaves the header out
			req.Header.Set(k, v)
		}
	}
	return req, nil
}

// do sends c to base with token (when not empty and no Authorization is
// given), checks the answer's status, body and headers against the
// document, and the request against it both ways.
func (k *contract) do(t *testing.T, base, token string, c call) got {
	t.Helper()
	if c.method == "" {
		c.method = http.MethodGet
	}
	header := map[string]string{}
	if token != "" {
		header["Authorization"] = "Bearer " + token
	}
	for h, v := range c.header {
		header[h] = v
	}
	req, err := newRequest(c.method, base+c.path, c.body, header)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	client := &http.Client{Timeout: 40 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Errorf("%s: %s %.100s: %v", c.name, c.method, c.path, err)
		return got{}
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	g := got{status: resp.StatusCode, header: resp.Header, raw: raw}
	if g.status != c.status || !strings.Contains(string(raw), c.says) {
		t.Errorf("%s: %d %.400s; want %d saying %q", c.name, g.status, raw, c.status, c.says)
	}
	if inst := resp.Header.Get("X-Instance-Id") != ""; inst == c.byNginx {
		t.Errorf("%s: X-Instance-Id %q, want it only on an instance's answer (nginx answered: %v)", c.name, resp.Header.Get("X-Instance-Id"), c.byNginx)
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Errorf("%s: no X-Request-Id", c.name)
	}

	vreq, _ := newRequest(c.method, base+c.path, c.body, header)
	op, reqErr, respErr := k.check(vreq, g.status, resp.Header, raw)
	if op == "" {
		t.Errorf("%s: %s %.100s is no operation of the document: %v", c.name, c.method, c.path, reqErr)
		return g
	}
	switch {
	case c.status >= 200 && c.status < 300 || c.request == accepts:
		if reqErr != nil {
			t.Errorf("%s: the server accepts the request, the document refuses it: %v", c.name, reqErr)
		}
	case c.request == refuses:
		if reqErr == nil {
			t.Errorf("%s: the server refuses the request (%d), the document accepts it", c.name, g.status)
		}
	case c.request == unchecked && c.status == http.StatusBadRequest && !c.byNginx:
		t.Errorf("%s: a 400 row must say whether the document refuses the request too", c.name)
	}
	if respErr != nil {
		t.Errorf("%s: %s answered %d %.300s, which the document does not allow: %v", c.name, op, g.status, raw, respErr)
	}
	return g
}

// check validates a request (a copy of the one sent, body unread) and the
// answer it got against the document. op is "METHOD /path" of the
// operation, empty when none matches (reqErr then says why).
func (k *contract) check(req *http.Request, status int, header http.Header, raw []byte) (op string, reqErr, respErr error) {
	route, params, err := k.router.FindRoute(req)
	if err != nil {
		return "", err, nil
	}
	op = req.Method + " " + route.Path
	k.mu.Lock()
	if k.seen[op] == nil {
		k.seen[op] = map[int]bool{}
	}
	k.seen[op][status] = true
	k.mu.Unlock()

	ctx := context.Background()
	in := &openapi3filter.RequestValidationInput{
		Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true},
	}
	reqErr = openapi3filter.ValidateRequest(ctx, in)
	respErr = openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: status, Header: header,
		Body: io.NopCloser(bytes.NewReader(raw)),
		// An undocumented status is an error, not a pass.
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	})
	return op, reqErr, respErr
}

// run does each call in order.
func (k *contract) run(t *testing.T, base, token string, calls ...call) {
	t.Helper()
	for _, c := range calls {
		k.do(t, base, token, c)
	}
}

// report logs every status seen per operation.
func (k *contract) report(t *testing.T) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var lines []string
	for op, statuses := range k.seen {
		var ss []string
		for s := range statuses {
			ss = append(ss, fmt.Sprint(s))
		}
		sort.Strings(ss)
		lines = append(lines, op+": "+strings.Join(ss, " "))
	}
	sort.Strings(lines)
	t.Logf("answers validated against /docs-json:\n%s", strings.Join(lines, "\n"))
}

// pinPrice makes the simulator quote a coin at exactly price (JSON number text).
func pinPrice(t *testing.T, simURL, coin, price string) {
	t.Helper()
	body := fmt.Sprintf(`{"id":%q,"currency":"usd","price":%s}`, coin, price)
	req, _ := http.NewRequest(http.MethodPut, simURL+"/_sim/price", strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("pin price: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("pin price %s: %d", body, resp.StatusCode)
	}
}

// clearFault ends an injected fault.
func clearFault(t *testing.T, simURL string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, simURL+"/_sim/fault", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("clear fault: %v", err)
	}
	resp.Body.Close()
}

// query builds a path with a raw query.
func query(path string, kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return path + "?" + v.Encode()
}

// The checks above can fail: drift of each kind the contract is about is
// caught, and the answers that differ only in shape are told apart.
func TestContractCatchesDrift(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join("..", "services", "gateway", "openapi.json"))
	if err != nil {
		t.Fatal(err)
	}
	k := parseContract(t, raw)
	price := `{"coinId":"bitcoin","vsCurrency":"usd","price":66904.678771551986684,"fetchedAt":"2026-02-28T03:55:00.000Z",` +
		`"batch":{"id":"b","size":1,"flushReason":"window","fetcher":"fetcher-1","attempt":1,"source":"coingecko"}}`
	failed := `{"statusCode":429,"message":"m","error":"Too Many Requests","vsCurrency":"usd","prices":[],` +
		`"errors":[{"coinId":"bitcoin","statusCode":429,"message":"m","retryAfterMs":1000,"batch":{"id":"b","size":0,"fetcher":"f"}}]}`
	nestErr := `{"statusCode":429,"message":"Too Many Requests","error":"Too Many Requests"}`
	jsonType := http.Header{"Content-Type": {"application/json"}}
	for _, tt := range []struct {
		name, path, body string
		status           int
		header           http.Header
		reqOK, respOK    bool
	}{
		{"a price", "/v1/price/bitcoin", price, 200, jsonType, true, true},
		{"an undocumented status", "/v1/price/bitcoin", nestErr, 418, jsonType, true, false},
		{"a price without its batch", "/v1/price/bitcoin", strings.Replace(price, `,"batch":{"id":"b","size":1,"flushReason":"window","fetcher":"fetcher-1","attempt":1,"source":"coingecko"}`, "", 1), 200, jsonType, true, false},
		{"a price with a field the document lacks", "/v1/price/bitcoin", strings.Replace(price, `{"coinId"`, `{"extra":1,"coinId"`, 1), 200, jsonType, true, false},
		{"a price as text", "/v1/price/bitcoin", `"66904.67"`, 200, jsonType, true, false},
		{"an error as HTML", "/v1/price/bitcoin", "<html>502</html>", 502, http.Header{"Content-Type": {"text/html"}}, true, false},
		{"an error without its error field", "/v1/price/bitcoin", `{"statusCode":404,"message":"Coin not found"}`, 404, jsonType, true, false},
		{"every id failed, 429", "/v1/prices?ids=bitcoin", failed, 429, jsonType, true, true},
		{"our limit on many coins, 429", "/v1/prices?ids=bitcoin", nestErr, 429, jsonType, true, true},
		{"every id failed without the error fields", "/v1/prices?ids=bitcoin", strings.Replace(failed, `"statusCode":429,"message":"m","error":"Too Many Requests",`, "", 1), 429, jsonType, true, false},
		{"history from a date", "/v1/price/bitcoin/history?from=2020-01-01", `{"coinId":"bitcoin","vsCurrency":"usd","items":[],"page":1,"limit":20,"totalItems":0,"totalPages":0,"hasNextPage":false}`, 200, jsonType, true, true},
		{"history from a word", "/v1/price/bitcoin/history?from=yesterday", `{"statusCode":400,"message":["from must be a valid ISO 8601 date string"],"error":"Bad Request"}`, 400, jsonType, false, true},
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://localhost:3000"+tt.path, nil)
		op, reqErr, respErr := k.check(req, tt.status, tt.header, []byte(tt.body))
		if op == "" {
			t.Errorf("%s: no operation: %v", tt.name, reqErr)
			continue
		}
		if (reqErr == nil) != tt.reqOK || (respErr == nil) != tt.respOK {
			t.Errorf("%s: request error %v (want none: %v), answer error %v (want none: %v)", tt.name, reqErr, tt.reqOK, respErr, tt.respOK)
		}
	}
}
