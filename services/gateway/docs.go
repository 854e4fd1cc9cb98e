package main

import (
	_ "embed"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/swagger"
)

// openAPI is the OpenAPI 3 document of every public route, the auth
// service's included, since nginx serves them under one host. A test keeps
// it and the routes in step.
//
//go:embed openapi.json
var openAPI []byte

func docs(app *fiber.App) {
	app.Get("/docs-json", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSONCharsetUTF8)
		return c.Send(openAPI)
	})
	app.Get("/docs/*", swagger.New(swagger.Config{
		URL:                  "/docs-json",
		Title:                "CryptoPulse API",
		PersistAuthorization: true,
	}))
}
