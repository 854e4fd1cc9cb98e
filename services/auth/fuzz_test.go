package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"cryptopulse/libs/httperr"
	"cryptopulse/testkit"
)

// loginBodyLimit is the body size past which the service answers 413.
const loginBodyLimit = 8 << 10

// FuzzLoginBody posts arbitrary bytes to POST /auth/login on one real auth
// service (real Redis, real HTTP) and checks that:
//   - the status is 200, 400, 401, 413 or 429: never a 5xx, never anything else;
//   - every answer is a JSON object; an error is the Nest shape whose
//     statusCode is the status;
//   - 413 exactly when the body is over the limit (or a connection reset,
//     see below);
//   - 200 only for a body that is exactly {"username": ADMIN_USER, "password":
//     ADMIN_PASS}, and then with a token.
//
// Seeds are in testdata/fuzz/FuzzLoginBody. Run longer with
//
//	go test -run='^$' -fuzz='^FuzzLoginBody$' -fuzztime=30s ./services/auth
func FuzzLoginBody(f *testing.F) {
	r := testkit.StartRedis(f)
	// A one-second window and a huge limit: the fuzzer's thousands of
	// logins from 127.0.0.1 must not turn every answer into a 429.
	base := startAuth(f, r.URL(), map[string]string{"THROTTLE_LOGIN_LIMIT": "1000000", "THROTTLE_TTL_MS": "1000"})
	hc := &http.Client{Timeout: 10 * time.Second}

	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := http.NewRequest(http.MethodPost, base+"/auth/login", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil && len(body) > loginBodyLimit && testkit.ConnectionReset(err) {
			// Over the limit, the service answers 413 and closes with the
			// body unread, so the kernel resets the connection and the
			// client may see the reset before the answer (nginx in front
			// closes lingeringly, so its clients get the 413).
			return
		}
		if err != nil {
			t.Fatalf("POST %d bytes: %v", len(body), err)
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("read answer: %v", err)
		}

		switch resp.StatusCode {
		case 200, 400, 401, 413, 429:
		default:
			t.Fatalf("status %d for %q: %s", resp.StatusCode, body, raw)
		}
		if (resp.StatusCode == 413) != (len(body) > loginBodyLimit) {
			t.Fatalf("status %d for a %d-byte body (limit %d)", resp.StatusCode, len(body), loginBodyLimit)
		}
		if resp.StatusCode != 200 {
			b := decodeNest(t, raw)
			if b.StatusCode != resp.StatusCode || b.Error != httperr.StatusText(resp.StatusCode) {
				t.Fatalf("status %d with body %s", resp.StatusCode, raw)
			}
			switch m := b.Message.(type) {
			case string:
				if m == "" {
					t.Fatalf("empty message: %s", raw)
				}
			case []any:
				if len(m) == 0 || resp.StatusCode != 400 {
					t.Fatalf("message list in a %d: %s", resp.StatusCode, raw)
				}
			default:
				t.Fatalf("message is %T: %s", b.Message, raw)
			}
			return
		}

		var tok LoginResponse
		if err := json.Unmarshal(raw, &tok); err != nil || tok.AccessToken == "" || tok.TokenType != "Bearer" || tok.ExpiresIn != "1h" {
			t.Fatalf("200 body %s: %v", raw, err)
		}
		var creds map[string]any
		if err := json.Unmarshal(body, &creds); err != nil {
			t.Fatalf("200 for a body that is not a JSON object: %q", body)
		}
		if len(creds) != 2 || creds["username"] != testUser || creds["password"] != testPass {
			t.Fatalf("200 for %q", body)
		}
	})
}
