package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"go.uber.org/zap"

	"cryptopulse/libs/web"
)

// publicPrefix is what nginx (deploy/nginx/nginx.conf, "location /auth/")
// sends to this service; its other routes (probes, metrics) are reached on
// the instance's own port only.
const publicPrefix = "/auth/"

// The API document lives with the gateway, which serves it; every public
// route of this service has an operation there, and every operation under
// publicPrefix is one this service serves.
func TestOpenAPIDocumentMatchesTheRoutes(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "gateway", "openapi.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			if strings.HasPrefix(path, publicPrefix) {
				documented = append(documented, strings.ToUpper(method)+" "+path)
			}
		}
	}
	app := web.New(web.Options{Service: "auth", Instance: "t", Log: zap.NewNop()})
	routes(app, deps{registry: web.NewRegistry()})
	var served []string
	for _, r := range app.GetRoutes(true) {
		if r.Method != fiber.MethodHead && strings.HasPrefix(r.Path, publicPrefix) {
			served = append(served, r.Method+" "+r.Path)
		}
	}
	sort.Strings(documented)
	sort.Strings(served)
	if len(served) == 0 || !reflect.DeepEqual(documented, served) {
		t.Errorf("openapi.json documents %v under %s; the auth service serves %v", documented, publicPrefix, served)
	}
}
