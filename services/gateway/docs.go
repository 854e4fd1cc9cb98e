package main

import (
	"bytes"
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

// googleFonts is the stylesheet link gofiber/swagger's page template
// hard-codes. The page is served without it: a self-hosted API's docs must
// not call the internet (the UI's own fonts fall back cleanly), and the
// browser test fails if the page asks for any outside host.
var googleFonts = []byte(`<link href="https://fonts.googleapis.com/css?family=Open+Sans:400,700|Source+Code+Pro:300,600|Titillium+Web:400,600,700" rel="stylesheet">`)

func docs(app *fiber.App) {
	app.Get("/docs-json", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSONCharsetUTF8)
		return c.Send(openAPI)
	})
	ui := swagger.New(swagger.Config{
		URL:                  "/docs-json",
		Title:                "CryptoPulse API",
		PersistAuthorization: true,
		// The validator badge would send the document's URL to
		// validator.swagger.io from any host but localhost.
		ValidatorUrl: "none",
	})
	app.Get("/docs/*", func(c *fiber.Ctx) error {
		if err := ui(c); err != nil {
			return err
		}
		if bytes.HasPrefix(c.Response().Header.ContentType(), []byte(fiber.MIMETextHTML)) {
			c.Response().SetBody(bytes.Replace(c.Response().Body(), googleFonts, nil, 1))
		}
		return nil
	})
}
