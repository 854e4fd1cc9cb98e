package main

import (
	"encoding/json"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"go.uber.org/zap"

	"cryptopulse/libs/pricedb"
	"cryptopulse/libs/web"
)

// authRoutes are served by the auth service; nginx puts them under the same host.
var authRoutes = map[string]bool{"POST /auth/login": true}

// undocumented are operational routes and pages for people (/docs, /live),
// kept out of the public document.
var undocumented = map[string]bool{"GET /metrics": true, "GET /docs-json": true, "GET /docs/*": true, "GET /live": true}

// documentedRoutes lists "METHOD /path" for every operation in openapi.json.
func documentedRoutes(t *testing.T) map[string]bool {
	t.Helper()
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Tags    []struct{ Name string }               `json:"tags"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi version %q, want 3.x", doc.OpenAPI)
	}
	tags := map[string]bool{}
	for _, tg := range doc.Tags {
		tags[tg.Name] = true
	}
	if !tags["auth"] || !tags["price"] {
		t.Errorf("tags %v, want auth and price", tags)
	}
	out := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			out[strings.ToUpper(method)+" "+path] = true
		}
	}
	return out
}

// servedRoutes lists the gateway's routes in OpenAPI path syntax.
func servedRoutes() map[string]bool {
	app := web.New(web.Options{Service: "gateway", Instance: "t", Log: zap.NewNop()})
	routes(app, deps{cfg: Config{}, registry: web.NewRegistry(), store: &pricedb.Store{}})
	param := regexp.MustCompile(`:([A-Za-z]+)`)
	out := map[string]bool{}
	for _, r := range app.GetRoutes(true) {
		if r.Method == fiber.MethodHead || r.Method == fiber.MethodConnect {
			continue
		}
		out[r.Method+" "+param.ReplaceAllString(r.Path, "{$1}")] = true
	}
	return out
}

func TestOpenAPIDocumentMatchesTheRoutes(t *testing.T) {
	doc := documentedRoutes(t)
	served := servedRoutes()
	var missing, phantom []string
	for r := range served {
		if !doc[r] && !undocumented[r] {
			missing = append(missing, r)
		}
	}
	for r := range doc {
		if !served[r] && !authRoutes[r] {
			phantom = append(phantom, r)
		}
	}
	sort.Strings(missing)
	sort.Strings(phantom)
	if len(missing) > 0 {
		t.Errorf("routes missing from openapi.json: %v", missing)
	}
	if len(phantom) > 0 {
		t.Errorf("openapi.json names routes nobody serves: %v", phantom)
	}
	for r := range authRoutes {
		if !doc[r] {
			t.Errorf("auth route %s missing from the document", r)
		}
	}
}

func TestDocsAreServed(t *testing.T) {
	app := web.New(web.Options{Service: "gateway", Instance: "t", Log: zap.NewNop()})
	docs(app)
	for path, want := range map[string]string{"/docs-json": `"openapi"`, "/docs/index.html": "swagger"} {
		resp, err := app.Test(httptestRequest(path), -1)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %v %v", path, resp.StatusCode, err)
		}
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		if !strings.Contains(strings.ToLower(b.String()), want) {
			t.Errorf("GET %s does not contain %s", path, want)
		}
	}
}

func httptestRequest(path string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, path, nil)
	return req
}
