package main

import (
	"errors"
	"net/http"

	"github.com/gofiber/fiber/v2"

	"cryptopulse/libs/httperr"
	"cryptopulse/libs/jwtauth"
	"cryptopulse/libs/throttle"
	"cryptopulse/libs/web"
)

// authenticate verifies the Bearer token and stores its claims.
func authenticate(v *jwtauth.Verifier) fiber.Handler {
	return func(c *fiber.Ctx) error {
		claims, err := v.VerifyHeader(c.Get(fiber.HeaderAuthorization))
		if err != nil {
			msg := jwtauth.ErrInvalidToken.Error()
			for _, known := range []error{jwtauth.ErrMissingHeader, jwtauth.ErrNotBearer, jwtauth.ErrBadBearer} {
				if errors.Is(err, known) {
					msg = known.Error()
				}
			}
			return httperr.Wrap(http.StatusUnauthorized, msg, err).WithHeader("WWW-Authenticate", `Bearer realm="cryptopulse"`)
		}
		c.Locals("claims", claims)
		return c.Next()
	}
}

func claimsOf(c *fiber.Ctx) *jwtauth.Claims {
	cl, _ := c.Locals("claims").(*jwtauth.Claims)
	return cl
}

// priceRule is the limit every price route shares, per token subject.
func (d deps) priceRule(c *fiber.Ctx) throttle.Rule {
	return throttle.Rule{
		Policy: "price", Subject: "user:" + claimsOf(c).Subject,
		Limit: d.cfg.GlobalLimit, Window: d.cfg.ThrottleTTL,
	}
}

func (d deps) throttle(c *fiber.Ctx) error {
	return web.Throttle(c, d.limiter, d.priceRule(c))
}
