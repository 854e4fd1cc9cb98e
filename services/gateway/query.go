package main

import (
	"sort"

	"github.com/gofiber/fiber/v2"

	"cryptopulse/libs/price"
)

// checkQuery rejects query parameters the route does not know, as the
// original's whitelisting validation did.
func checkQuery(c *fiber.Ctx, allowed ...string) []string {
	var problems []string
	c.Context().QueryArgs().VisitAll(func(k, _ []byte) {
		for _, a := range allowed {
			if string(k) == a {
				return
			}
		}
		problems = append(problems, "property "+string(k)+" should not exist")
	})
	sort.Strings(problems)
	return problems
}

// pathCoin validates the coinId path parameter and the vsCurrency query.
func pathCoin(c *fiber.Ctx, allowedQuery ...string) (coin, currency string, problems []string) {
	coin = c.Params("coinId")
	problems = checkQuery(c, allowedQuery...)
	if err := price.ValidateCoinID(coin); err != nil {
		problems = append(problems, err.Error())
	}
	currency = c.Query("vsCurrency", "usd")
	if err := price.ValidateCurrency(currency); err != nil {
		problems = append(problems, err.Error())
	}
	return coin, currency, problems
}
