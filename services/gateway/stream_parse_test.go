package main

import (
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"

	"cryptopulse/libs/jwtauth"
)

// A stream outlives its request: once it has taken the connection over,
// fasthttp reuses the request's buffers for another request. What
// parseStream keeps must not point into them, or a resume would start from
// whatever id the next request carried (seen as duplicate events after a
// gateway was killed under 1,000 streams).
func TestParsedStreamKeepsNothingOfTheRequestsBuffers(t *testing.T) {
	app := fiber.New()
	for _, tt := range []struct{ name, uri, header string }{
		{"Last-Event-ID header", "/v1/prices/stream?ids=bitcoin&vsCurrency=eur", "1700000000000-5"},
		{"lastEventId parameter", "/v1/prices/stream?ids=bitcoin&vsCurrency=eur&lastEventId=1700000000000-5", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fc := &fasthttp.RequestCtx{}
			fc.Request.SetRequestURI(tt.uri)
			if tt.header != "" {
				fc.Request.Header.Set("Last-Event-ID", tt.header)
			}
			c := app.AcquireCtx(fc)
			defer app.ReleaseCtx(c)
			c.Locals("claims", &jwtauth.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "ann"}})
			r, err := parseStream(c)
			if err != nil {
				t.Fatal(err)
			}
			// The next request on this context overwrites the buffers in place.
			copy(fc.Request.Header.Peek("Last-Event-ID"), "9999999999999-9")
			copy(fc.QueryArgs().Peek("lastEventId"), "9999999999999-9")
			copy(fc.QueryArgs().Peek("vsCurrency"), "gbp")
			if r.after != "1700000000000-5" || r.currency != "eur" {
				t.Errorf("after the request's buffers were reused: after %q currency %q, want 1700000000000-5 and eur", r.after, r.currency)
			}
		})
	}
}
