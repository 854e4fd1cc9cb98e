package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"go.uber.org/zap"

	"cryptopulse/libs/httperr"
	"cryptopulse/libs/pricedb"
	"cryptopulse/libs/web"
)

// authPrefix is what nginx sends to the auth service ("location /auth/" in
// deploy/nginx/nginx.conf); the auth service's own test holds its routes
// to the document's operations under it.
const authPrefix = "/auth/"

// undocumented are operational routes and pages for people (/docs, /live),
// kept out of the public document.
var undocumented = map[string]bool{"GET /metrics": true, "GET /docs-json": true, "GET /docs/*": true, "GET /live": true}

// apiDoc is what these tests read of openapi.json.
type apiDoc struct {
	OpenAPI string                                 `json:"openapi"`
	Tags    []struct{ Name string }                `json:"tags"`
	Paths   map[string]map[string]operation        `json:"paths"`
	Comps   struct{ Schemas map[string]schemaRef } `json:"components"`
}

type operation struct {
	RequestBody json.RawMessage `json:"requestBody"`
	Security    []any           `json:"security"`
	Responses   map[string]struct {
		Ref     string `json:"$ref"`
		Content map[string]struct {
			Schema schemaRef `json:"schema"`
		} `json:"content"`
	} `json:"responses"`
}

type schemaRef struct {
	Ref     string      `json:"$ref"`
	OneOf   []schemaRef `json:"oneOf"`
	Pattern string      `json:"pattern"`
}

func loadDoc(t *testing.T) apiDoc {
	t.Helper()
	var doc apiDoc
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return doc
}

// documentedRoutes lists "METHOD /path" for every operation in openapi.json.
func documentedRoutes(t *testing.T) map[string]bool {
	t.Helper()
	doc := loadDoc(t)
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
		if strings.Contains(r, " "+authPrefix) {
			t.Errorf("the gateway serves %s, but nginx sends %s to the auth service", r, authPrefix)
		}
	}
	for r := range doc {
		if !served[r] && !strings.Contains(r, " "+authPrefix) {
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
}

// nginxConf is the edge proxy's configuration, whose own errors every
// operation may answer.
func nginxConf(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "nginx", "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// edgeStatuses can reach any request, whatever its route: nginx's errors
// for requests it cannot read or pass on (400, 413 over 64 KiB, 414, 431,
// 502, 504), the services' 413 for a body over their limit and 431 for a
// head over web.MaxRequestHead, and 500, the translator's answer to the
// unexpected.
var edgeStatuses = []string{"400", "413", "414", "431", "500", "502", "504"}

// Every status nginx.conf turns into JSON is one the document lists
// wherever it can occur, so a new error_page cannot go undocumented.
func TestOpenAPIListsEveryStatusOfEveryLayer(t *testing.T) {
	conf := nginxConf(t)
	doc := loadDoc(t)
	edge := map[string]bool{}
	for _, s := range edgeStatuses {
		edge[s] = true
	}
	pages := regexp.MustCompile(`(?m)^\s*error_page (\d{3}) (?:=(\d{3}) )?\S+;`).FindAllStringSubmatch(conf, -1)
	if len(pages) == 0 {
		t.Fatal("nginx.conf has no error_page")
	}
	for _, m := range pages {
		status := m[1]
		if m[2] != "" {
			status = m[2]
		}
		switch {
		case edge[status]:
		case status == "404": // unknown paths only: no operation
		case status == "408": // reading a body: checked below for operations with one
		case status == "503": // nginx makes 503 only for limit_req/limit_conn, which this config lacks
			if strings.Contains(conf, "limit_req") || strings.Contains(conf, "limit_conn") {
				t.Error("nginx.conf limits requests: its 503 must be listed for every operation")
			}
		default:
			t.Errorf("nginx.conf answers %s with JSON, and the document does not say where", status)
		}
	}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			name := strings.ToUpper(method) + " " + path
			want := append([]string(nil), edgeStatuses...)
			if len(op.Security) > 0 {
				want = append(want, "401", "429")
			}
			if op.RequestBody != nil {
				want = append(want, "408")
			}
			for _, s := range want {
				if _, ok := op.Responses[s]; !ok {
					t.Errorf("%s does not list %s", name, s)
				}
			}
			for status, r := range op.Responses {
				// Answers are JSON, errors always; a 2xx may be a stream.
				if status[0] != '2' && r.Ref == "" && len(r.Content["application/json"].Schema.Ref)+len(r.Content["application/json"].Schema.OneOf) == 0 {
					t.Errorf("%s %s has no JSON body schema", name, status)
				}
			}
		}
	}
}

// One 413 body everywhere: nginx's is the services'.
func TestNginxErrorBodiesAreTheServices(t *testing.T) {
	conf := nginxConf(t)
	for _, status := range []int{http.StatusRequestEntityTooLarge, http.StatusRequestHeaderFieldsTooLarge} {
		m := regexp.MustCompile(`(?m)^\s*return ` + strconv.Itoa(status) + ` '(.*)';`).FindStringSubmatch(conf)
		if m == nil {
			t.Errorf("nginx.conf has no JSON %d", status)
			continue
		}
		msg := httperr.MsgTooLarge
		if status == http.StatusRequestHeaderFieldsTooLarge {
			msg = http.StatusText(status)
		}
		want, _ := json.Marshal(httperr.BodyOf(httperr.New(status, msg)))
		if m[1] != string(want) {
			t.Errorf("nginx's %d body %s, the services' %s", status, m[1], want)
		}
	}
}

// The document's pattern for from and to accepts exactly what the history
// route parses, in both directions.
func TestHistoryDatePatternIsWhatTheServerParses(t *testing.T) {
	pattern := loadDoc(t).Comps.Schemas["ISODateTime"].Pattern
	re, err := regexp.Compile(pattern)
	if pattern == "" || err != nil {
		t.Fatalf("ISODateTime pattern %q: %v", pattern, err)
	}
	app := fiber.New()
	app.Get("/", func(c *fiber.Ctx) error {
		if _, problems := timeParam(c, "from", nil); len(problems) > 0 {
			return c.SendStatus(http.StatusBadRequest)
		}
		return c.SendStatus(http.StatusOK)
	})
	for _, v := range []string{
		"2020-01-01", "2020-01-01T10:00", "2020-01-01T10:00:00", "2020-01-01T10:00:00.123",
		"2020-01-01T10:00:00Z", "2020-01-01T10:00:00.123456789Z", "2020-01-01T10:00:00,5Z",
		"2020-01-01T10:00:00+01:00", "2020-01-01T10:00:00-05:30",
		"2020-01-01T10:00Z", "2020-01-01T10:00:00+0100", "2020-01-01t10:00:00Z", "2020-01-01T10:00:00z",
		"2020-1-1", "20200101", "2020-01", "2020-01-01T10", "2020-01-01 10:00:00", "yesterday", "2020-01-01T10:00:00.Z",
	} {
		resp, err := app.Test(httptestRequest("/?from="+url.QueryEscape(v)), -1)
		if err != nil {
			t.Fatal(err)
		}
		if parsed, documented := resp.StatusCode == http.StatusOK, re.MatchString(v); parsed != documented {
			t.Errorf("from=%s: the server accepts it: %v, the document: %v", v, parsed, documented)
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
