package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"mime"
	"net/http"
	"sort"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"cryptopulse/libs/clientip"
	"cryptopulse/libs/httperr"
	"cryptopulse/libs/jwtauth"
	"cryptopulse/libs/throttle"
	"cryptopulse/libs/web"
)

type deps struct {
	log      *zap.Logger
	cfg      Config
	issuer   *jwtauth.Issuer
	limiter  *throttle.Limiter
	clientIP *clientip.Resolver
	redis    *redis.Client
	registry *prometheus.Registry
}

func routes(app *fiber.App, d deps) {
	web.Probes(app, "auth", d.cfg.InstanceID, web.Check{Name: "redis", Check: func(ctx context.Context) error {
		return d.redis.Ping(ctx).Err()
	}})
	web.Metrics(app, d.registry)
	app.Post("/auth/login", handleLogin(d))
}

// loginBody is POST /auth/login's body.
type loginBody struct {
	Username string
	Password string
}

// LoginResponse is the 200 body of POST /auth/login.
type LoginResponse struct {
	AccessToken string `json:"accessToken"`
	TokenType   string `json:"tokenType"`
	ExpiresIn   string `json:"expiresIn"`
}

func handleLogin(d deps) fiber.Handler {
	logins := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "auth_logins_total", Help: "Login attempts by outcome.",
	}, []string{"outcome"})
	d.registry.MustRegister(logins)
	wantUser := sha256.Sum256([]byte(d.cfg.AdminUser))
	wantPass := sha256.Sum256([]byte(d.cfg.AdminPass))

	return func(c *fiber.Ctx) error {
		body, err := parseLogin(c.Get(fiber.HeaderContentType), c.Body())
		if err != nil {
			logins.WithLabelValues("bad_request").Inc()
			return err
		}
		ip := d.clientIP.ClientIP(c)
		if err := web.Throttle(c, d.limiter,
			throttle.Rule{Policy: "login-ip", Subject: ip, Limit: d.cfg.LoginLimit, Window: d.cfg.ThrottleTTL},
			throttle.Rule{Policy: "login-user", Subject: body.Username, Limit: d.cfg.LoginLimit, Window: d.cfg.ThrottleTTL},
		); err != nil {
			logins.WithLabelValues("throttled").Inc()
			return err
		}
		// Hashing first gives equal-length inputs, so the comparison time
		// says nothing about either string, not even its length.
		gotUser := sha256.Sum256([]byte(body.Username))
		gotPass := sha256.Sum256([]byte(body.Password))
		userOK := subtle.ConstantTimeCompare(gotUser[:], wantUser[:])
		passOK := subtle.ConstantTimeCompare(gotPass[:], wantPass[:])
		if userOK&passOK != 1 {
			logins.WithLabelValues("invalid").Inc()
			d.log.Info("login rejected", zap.String("client", ip), zap.String("requestId", httperr.RequestID(c)))
			return httperr.New(http.StatusUnauthorized, "Invalid credentials")
		}
		token, err := d.issuer.Issue(body.Username, body.Username)
		if err != nil {
			return err
		}
		logins.WithLabelValues("ok").Inc()
		return c.JSON(LoginResponse{AccessToken: token, TokenType: "Bearer", ExpiresIn: d.issuer.ExpiresIn()})
	}
}

// maxCredentialLen bounds each field; longer values are junk, not passwords.
const maxCredentialLen = 256

// msgNotJSON refuses a login body sent as anything but application/json.
const msgNotJSON = "Content-Type must be application/json"

// parseLogin validates the body as the original's ValidationPipe did
// (whitelist + forbidNonWhitelisted): every problem is listed at once.
func parseLogin(contentType string, raw []byte) (loginBody, error) {
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(raw))
	if len(bytes.TrimSpace(raw)) == 0 {
		return loginBody{}, httperr.Validation("username should not be empty", "username must be a string",
			"password should not be empty", "password must be a string")
	}
	// The original's express.json() parsed application/json only and left
	// any other body unread, which its validation then refused with a 400;
	// naming the Content-Type says why.
	if mt, _, err := mime.ParseMediaType(contentType); err != nil || mt != fiber.MIMEApplicationJSON {
		return loginBody{}, httperr.New(http.StatusBadRequest, msgNotJSON)
	}
	if err := dec.Decode(&fields); err != nil || dec.More() {
		return loginBody{}, httperr.New(http.StatusBadRequest, "Malformed JSON body: expected an object with username and password")
	}
	var problems, unknown []string
	for k := range fields {
		if k != "username" && k != "password" {
			unknown = append(unknown, "property "+k+" should not exist")
		}
	}
	sort.Strings(unknown)
	problems = append(problems, unknown...)
	str := func(name string) string {
		raw, ok := fields[name]
		var s string
		// json.Unmarshal takes null into a string without complaint, so null
		// is checked first: it is neither a string nor a value.
		if !ok || string(raw) == "null" || json.Unmarshal(raw, &s) != nil {
			if !ok || string(raw) == "null" {
				problems = append(problems, name+" should not be empty")
			}
			problems = append(problems, name+" must be a string")
			return ""
		}
		if s == "" {
			problems = append(problems, name+" should not be empty")
		}
		if len(s) > maxCredentialLen {
			problems = append(problems, name+" must be shorter than or equal to 256 characters")
		}
		return s
	}
	b := loginBody{Username: str("username"), Password: str("password")}
	if len(problems) > 0 {
		return loginBody{}, httperr.Validation(problems...)
	}
	return b, nil
}
