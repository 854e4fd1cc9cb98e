package main

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"cryptopulse/libs/jwtauth"
	"cryptopulse/testkit"
)

// loginRow is one request to POST /auth/login and the answer it must get, in
// the style of ardanlabs/service's apitest tables.
type loginRow struct {
	name       string
	body       string
	header     map[string]string
	statusCode int
	// expResp is the exact Nest error body; nil for a 200.
	expResp any
}

func TestLogin(t *testing.T) {
	r := testkit.StartRedis(t)
	// A high limit: this test is about bodies and credentials, not throttling.
	base := startAuth(t, r.URL(), map[string]string{"THROTTLE_LOGIN_LIMIT": "1000"})

	valid := `{"username":"` + testUser + `","password":"` + testPass + `"}`
	nest400 := func(msg ...string) map[string]any {
		list := make([]any, len(msg))
		for i, m := range msg {
			list[i] = m
		}
		return map[string]any{"statusCode": float64(400), "message": list, "error": "Bad Request"}
	}
	malformed := map[string]any{"statusCode": float64(400), "error": "Bad Request",
		"message": "Malformed JSON body: expected an object with username and password"}
	notJSON := map[string]any{"statusCode": float64(400), "message": "Content-Type must be application/json", "error": "Bad Request"}
	invalid := map[string]any{"statusCode": float64(401), "message": "Invalid credentials", "error": "Unauthorized"}
	tooLarge := map[string]any{"statusCode": float64(413), "message": "Request body is too large", "error": "Payload Too Large"}

	table := []loginRow{
		{name: "valid", body: valid, statusCode: http.StatusOK},
		{name: "wrong password", body: `{"username":"admin","password":"nope"}`, statusCode: 401, expResp: invalid},
		{name: "wrong user", body: `{"username":"root","password":"` + testPass + `"}`, statusCode: 401, expResp: invalid},
		{name: "user differs in case", body: `{"username":"Admin","password":"` + testPass + `"}`, statusCode: 401, expResp: invalid},
		{name: "password with trailing space", body: `{"username":"admin","password":"` + testPass + ` "}`, statusCode: 401, expResp: invalid},
		{name: "missing password", body: `{"username":"admin"}`, statusCode: 400,
			expResp: nest400("password should not be empty", "password must be a string")},
		{name: "missing username", body: `{"password":"x"}`, statusCode: 400,
			expResp: nest400("username should not be empty", "username must be a string")},
		{name: "unknown field", body: `{"username":"admin","password":"x","x":1}`, statusCode: 400,
			expResp: nest400("property x should not exist")},
		{name: "unknown fields sorted, field names are case-sensitive", body: `{"Username":"admin","password":"x","username":"a","b":2}`, statusCode: 400,
			expResp: nest400("property Username should not exist", "property b should not exist")},
		{name: "wrong types", body: `{"username":1,"password":true}`, statusCode: 400,
			expResp: nest400("username must be a string", "password must be a string")},
		{name: "null fields", body: `{"username":null,"password":null}`, statusCode: 400,
			expResp: nest400("username should not be empty", "username must be a string", "password should not be empty", "password must be a string")},
		{name: "object field", body: `{"username":{"$gt":""},"password":["x"]}`, statusCode: 400,
			expResp: nest400("username must be a string", "password must be a string")},
		{name: "empty strings", body: `{"username":"","password":""}`, statusCode: 400,
			expResp: nest400("username should not be empty", "password should not be empty")},
		{name: "username too long", body: `{"username":"` + strings.Repeat("u", 257) + `","password":"x"}`, statusCode: 400,
			expResp: nest400("username must be shorter than or equal to 256 characters")},
		{name: "empty body", body: "", statusCode: 400,
			expResp: nest400("username should not be empty", "username must be a string", "password should not be empty", "password must be a string")},
		{name: "whitespace body", body: " \n\t ", statusCode: 400,
			expResp: nest400("username should not be empty", "username must be a string", "password should not be empty", "password must be a string")},
		{name: "JSON null", body: "null", statusCode: 400,
			expResp: nest400("username should not be empty", "username must be a string", "password should not be empty", "password must be a string")},
		{name: "malformed JSON", body: `{"username":`, statusCode: 400, expResp: malformed},
		{name: "not an object", body: `["admin","x"]`, statusCode: 400, expResp: malformed},
		{name: "a string", body: `"admin"`, statusCode: 400, expResp: malformed},
		{name: "trailing garbage", body: valid + `{}`, statusCode: 400, expResp: malformed},
		{name: "form encoded", body: `username=admin&password=x`, statusCode: 400, expResp: notJSON,
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}},
		{name: "JSON sent as text/plain", body: valid, statusCode: 400, expResp: notJSON,
			header: map[string]string{"Content-Type": "text/plain"}},
		{name: "JSON sent as another JSON type", body: valid, statusCode: 400, expResp: notJSON,
			header: map[string]string{"Content-Type": "application/merge-patch+json"}},
		{name: "JSON with a charset, type in capitals", body: valid, statusCode: http.StatusOK,
			header: map[string]string{"Content-Type": "Application/JSON; charset=utf-8"}},
		{name: "empty body as text/plain lists the missing fields", body: " ", statusCode: 400,
			header:  map[string]string{"Content-Type": "text/plain"},
			expResp: nest400("username should not be empty", "username must be a string", "password should not be empty", "password must be a string")},
		{name: "body of exactly 8 KiB", body: padTo(`{"username":"admin","password":"nope"}`, 8<<10), statusCode: 401, expResp: invalid},
		{name: "body one byte over 8 KiB", body: padTo(`{"username":"admin","password":"nope"}`, 8<<10+1), statusCode: 413, expResp: tooLarge},
		{name: "body over 8 KiB", body: `{"username":"admin","password":"` + strings.Repeat("p", 9<<10) + `"}`, statusCode: 413, expResp: tooLarge},
	}

	for _, tt := range table {
		t.Run(tt.name, func(t *testing.T) {
			got := do(t, base, request{path: "/auth/login", body: tt.body, header: tt.header})
			if got.status != tt.statusCode {
				t.Fatalf("status = %d, want %d; body %s", got.status, tt.statusCode, got.raw)
			}
			if ct := got.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q, want JSON", ct)
			}
			if tt.expResp == nil {
				return
			}
			var body any
			if err := json.Unmarshal(got.raw, &body); err != nil {
				t.Fatalf("body is not JSON: %v: %q", err, got.raw)
			}
			if !reflect.DeepEqual(body, tt.expResp) {
				t.Errorf("body\n got %s\nwant %s", compact(got.raw), mustJSON(t, tt.expResp))
			}
		})
	}
}

// padTo pads a JSON body with trailing spaces to exactly n bytes.
func padTo(body string, n int) string { return body + strings.Repeat(" ", n-len(body)) }

func mustJSON(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// TestLoginToken checks the 200 body and the token in it byte by byte: the
// header, every claim, and an HMAC-SHA256 signature computed here without
// the service's JWT code.
func TestLoginToken(t *testing.T) {
	r := testkit.StartRedis(t)
	for _, expiresIn := range []struct {
		text string
		ttl  int64
	}{{"1h", 3600}, {"15m", 900}, {"7200", 7200}} {
		t.Run(expiresIn.text, func(t *testing.T) {
			base := startAuth(t, r.URL(), map[string]string{"JWT_EXPIRES_IN": expiresIn.text, "THROTTLE_LOGIN_LIMIT": "1000"})
			before := time.Now().Unix()
			got := login(t, base, testUser, testPass, nil)
			after := time.Now().Unix()
			if got.status != http.StatusOK {
				t.Fatalf("status = %d: %s", got.status, got.raw)
			}

			var body map[string]any
			if err := json.Unmarshal(got.raw, &body); err != nil {
				t.Fatal(err)
			}
			if len(body) != 3 || body["tokenType"] != "Bearer" || body["expiresIn"] != expiresIn.text {
				t.Fatalf("body = %s, want exactly accessToken, tokenType Bearer, expiresIn %q", got.raw, expiresIn.text)
			}
			tok, _ := body["accessToken"].(string)
			parts := strings.Split(tok, ".")
			if len(parts) != 3 {
				t.Fatalf("accessToken %q is not a JWS compact serialization", tok)
			}

			var header map[string]any
			decodeSegment(t, parts[0], &header)
			if !reflect.DeepEqual(header, map[string]any{"alg": "HS256", "typ": "JWT"}) {
				t.Errorf("header = %v, want alg HS256, typ JWT", header)
			}

			var claims map[string]any
			decodeSegment(t, parts[1], &claims)
			if claims["sub"] != testUser || claims["username"] != testUser {
				t.Errorf("sub, username = %v, %v; want %q", claims["sub"], claims["username"], testUser)
			}
			iat, _ := claims["iat"].(float64)
			exp, _ := claims["exp"].(float64)
			if int64(iat) < before || int64(iat) > after {
				t.Errorf("iat = %v, want within [%d, %d]", claims["iat"], before, after)
			}
			if int64(exp)-int64(iat) != expiresIn.ttl {
				t.Errorf("exp - iat = %v, want %d", exp-iat, expiresIn.ttl)
			}
			for k := range claims {
				switch k {
				case "sub", "username", "iat", "exp":
				default:
					t.Errorf("unexpected claim %q = %v", k, claims[k])
				}
			}

			mac := hmac.New(sha256.New, []byte(testSecret))
			mac.Write([]byte(parts[0] + "." + parts[1]))
			if want := base64.RawURLEncoding.EncodeToString(mac.Sum(nil)); parts[2] != want {
				t.Errorf("signature %q, want HMAC-SHA256 %q", parts[2], want)
			}

			// And the gateways' verifier accepts it.
			v, err := jwtauth.NewVerifier(testSecret, nil)
			if err != nil {
				t.Fatal(err)
			}
			if c, err := v.VerifyHeader("Bearer " + tok); err != nil || c.Subject != testUser {
				t.Errorf("VerifyHeader: %v, %v", c, err)
			}
		})
	}
}

func decodeSegment(tb testing.TB, seg string, v any) {
	tb.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		tb.Fatalf("segment %q is not base64url without padding: %v", seg, err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		tb.Fatalf("segment %s is not JSON: %v", raw, err)
	}
}

// TestRefusesBadConfig: a bad value stops the service at start with a
// message naming the variable.
func TestRefusesBadConfig(t *testing.T) {
	table := []struct {
		name string
		env  map[string]string
		want []string // substrings of the error
	}{
		{"short JWT_SECRET", map[string]string{"JWT_SECRET": strings.Repeat("s", 31)}, []string{"JWT_SECRET", "at least 32"}},
		{"missing JWT_SECRET", map[string]string{"JWT_SECRET": ""}, []string{"JWT_SECRET", "required"}},
		{"missing ADMIN_USER", map[string]string{"ADMIN_USER": ""}, []string{"ADMIN_USER", "required"}},
		{"blank ADMIN_USER", map[string]string{"ADMIN_USER": "   "}, []string{"ADMIN_USER", "required"}},
		{"missing ADMIN_PASS", map[string]string{"ADMIN_PASS": ""}, []string{"ADMIN_PASS", "required"}},
		{"THROTTLE_LOGIN_LIMIT not a number", map[string]string{"THROTTLE_LOGIN_LIMIT": "five"}, []string{"THROTTLE_LOGIN_LIMIT", `"five"`}},
		{"THROTTLE_LOGIN_LIMIT zero", map[string]string{"THROTTLE_LOGIN_LIMIT": "0"}, []string{"THROTTLE_LOGIN_LIMIT"}},
		{"THROTTLE_LOGIN_LIMIT negative", map[string]string{"THROTTLE_LOGIN_LIMIT": "-5"}, []string{"THROTTLE_LOGIN_LIMIT"}},
		{"JWT_EXPIRES_IN unit", map[string]string{"JWT_EXPIRES_IN": "1x"}, []string{"JWT_EXPIRES_IN", `"1x"`}},
		{"JWT_EXPIRES_IN words", map[string]string{"JWT_EXPIRES_IN": "forever"}, []string{"JWT_EXPIRES_IN"}},
		{"JWT_EXPIRES_IN zero", map[string]string{"JWT_EXPIRES_IN": "0"}, []string{"JWT_EXPIRES_IN"}},
		{"JWT_EXPIRES_IN negative", map[string]string{"JWT_EXPIRES_IN": "-1h"}, []string{"JWT_EXPIRES_IN"}},
		{"JWT_EXPIRES_IN over a year", map[string]string{"JWT_EXPIRES_IN": "400d"}, []string{"JWT_EXPIRES_IN", "longer than a year"}},
		{"JWT_EXPIRES_IN overflowing", map[string]string{"JWT_EXPIRES_IN": "31536000w"}, []string{"JWT_EXPIRES_IN", "longer than a year"}},
		{"THROTTLE_TTL_MS", map[string]string{"THROTTLE_TTL_MS": "soon"}, []string{"THROTTLE_TTL_MS"}},
		{"TRUSTED_PROXIES", map[string]string{"TRUSTED_PROXIES": "nginx"}, []string{"TRUSTED_PROXIES", `"nginx"`}},
		{"PORT", map[string]string{"PORT": "70000"}, []string{"PORT"}},
		{"REDIS_URL", map[string]string{"REDIS_URL": "http://example"}, []string{"REDIS_URL"}},
		{"every problem at once", map[string]string{"JWT_SECRET": "short", "ADMIN_USER": "", "THROTTLE_LOGIN_LIMIT": "x"},
			[]string{"JWT_SECRET", "ADMIN_USER", "THROTTLE_LOGIN_LIMIT"}},
	}
	for _, tt := range table {
		t.Run(tt.name, func(t *testing.T) {
			err := runErr(t, tt.env)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			// A secret must never be echoed back, not even a bad one.
			if s := tt.env["JWT_SECRET"]; len(s) > 3 && strings.Contains(err.Error(), s) {
				t.Errorf("error %q echoes JWT_SECRET", err)
			}
		})
	}
}

// TestSecurityHeaders: every answer names the instance, carries a request id
// (echoing the caller's), says nosniff, and has no framework banner; an
// unknown route is a Nest-shaped 404.
func TestSecurityHeaders(t *testing.T) {
	r := testkit.StartRedis(t)
	base := startAuth(t, r.URL(), nil)
	table := []struct {
		name   string
		req    request
		status int
	}{
		{"health", request{method: http.MethodGet, path: "/health"}, 200},
		{"login", request{path: "/auth/login", body: `{"username":"admin","password":"bad"}`}, 401},
		{"bad body", request{path: "/auth/login", body: `{`}, 400},
		{"unknown route", request{method: http.MethodGet, path: "/x"}, 404},
		// NestJS answers a known path with the wrong method as an unknown route.
		{"wrong method", request{method: http.MethodGet, path: "/auth/login"}, 404},
	}
	for _, tt := range table {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.header = map[string]string{"X-Request-Id": "req-" + strings.ReplaceAll(tt.name, " ", "-")}
			got := do(t, base, tt.req)
			if got.status != tt.status {
				t.Fatalf("status = %d, want %d: %s", got.status, tt.status, got.raw)
			}
			checkHeaders(t, got.header, "req-"+strings.ReplaceAll(tt.name, " ", "-"))
			if got.status >= 400 {
				if b := got.errBody(t); b.StatusCode != got.status {
					t.Errorf("statusCode %d in a %d answer", b.StatusCode, got.status)
				}
			}
			if got.status == 404 {
				b := got.errBody(t)
				if want := "Cannot GET " + tt.req.path; b.Message != want || b.StatusCode != 404 || b.Error != "Not Found" {
					t.Errorf("404 body %s, want message %q", got.raw, want)
				}
			}
		})
	}
	// Without one, the service makes a request id up.
	got := do(t, base, request{method: http.MethodGet, path: "/health"})
	if id := got.header.Get("X-Request-Id"); len(id) < 16 {
		t.Errorf("X-Request-Id = %q, want a generated id", id)
	}
}

func checkHeaders(t *testing.T, h http.Header, requestID string) {
	t.Helper()
	if got := h.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options = %q, want nosniff", got)
	}
	if got := h.Get("X-Instance-Id"); got != "auth-test" {
		t.Errorf("X-Instance-Id = %q, want auth-test", got)
	}
	if got := h.Get("X-Request-Id"); got != requestID {
		t.Errorf("X-Request-Id = %q, want %q", got, requestID)
	}
	if s := strings.ToLower(h.Get("Server") + h.Get("X-Powered-By")); strings.Contains(s, "fiber") || strings.Contains(s, "fasthttp") {
		t.Errorf("framework banner: Server %q, X-Powered-By %q", h.Get("Server"), h.Get("X-Powered-By"))
	}
}

// TestLoginChunkedBodyLimit: a body sent without a length (chunked) is cut
// off at the same limit. The request goes out in one write on a raw
// connection: the server answers 413 and closes without reading the rest, so
// a client still writing would see a reset instead of the answer.
func TestLoginChunkedBodyLimit(t *testing.T) {
	r := testkit.StartRedis(t)
	base := startAuth(t, r.URL(), nil)
	for _, tt := range []struct {
		name   string
		size   int
		status int
	}{
		{"small", 100, http.StatusUnauthorized},
		{"over the limit", 9 << 10, http.StatusRequestEntityTooLarge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body := padTo(`{"username":"admin","password":"nope"}`, tt.size)
			conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			req := fmt.Sprintf("POST /auth/login HTTP/1.1\r\nHost: auth\r\nContent-Type: application/json\r\n"+
				"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(body), body)
			if _, err := io.WriteString(conn, req); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, raw)
			}
			if b := decodeNest(t, raw); b.StatusCode != tt.status {
				t.Errorf("body %s", raw)
			}
		})
	}
}
