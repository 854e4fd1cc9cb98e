package e2e

// Deployment checks that need no Docker engine: the compose files are loaded
// and validated by compose-go (the library `docker compose` itself uses),
// the Dockerfile and .dockerignore are read, and the nginx config is checked
// by the real nginx (`nginx -t`). Then the local topology (tools/devstack)
// runs from the real binaries behind that same nginx config.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"cryptopulse/tools/devstack"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := devstack.FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// loadCompose loads a compose file the way `docker compose config` does:
// schema validation, interpolation, consistency checks (depends_on
// targets exist, ...). It is hermetic: neither the caller's environment nor
// a developer's .env takes part, and env_file contents are not read (CI has
// no .env), so defaults such as ${POSTGRES_USER:-cryptopulse} apply.
func loadCompose(t *testing.T, file string, profiles ...string) *types.Project {
	t.Helper()
	root := repoRoot(t)
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, file)},
		cli.WithWorkingDirectory(root),
		cli.WithEnv(nil),
		cli.WithoutEnvironmentResolution,
		cli.WithProfiles(profiles),
	)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("%s does not load as a compose file: %v", file, err)
	}
	return p
}

func serviceNames(p *types.Project) []string {
	var names []string
	for n := range p.Services {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// checkCompose asserts what both compose files promise: the images, a
// healthcheck on every service, env_file .env and a Dockerfile build on
// ours, dependencies that wait for health, the topology's environment, a
// stop grace longer than the services' drain, nginx alone on 3000:80 with
// the repo's nginx.conf mounted read-only, and every upstream name in that
// nginx.conf resolvable on the compose network.
func checkCompose(t *testing.T, p *types.Project, ours map[string]string, wantDeps map[string][]string) {
	t.Helper()
	root := repoRoot(t)
	want := []string{"nginx", "postgres", "redis"}
	for n := range ours {
		want = append(want, n)
	}
	slices.Sort(want)
	if got := serviceNames(p); !slices.Equal(got, want) {
		t.Errorf("services %v, want %v", got, want)
	}
	images := map[string]string{"postgres": "postgres:16-alpine", "redis": "redis:7-alpine", "nginx": "nginx:1.27-alpine"}
	for name, img := range images {
		if got := p.Services[name].Image; got != img {
			t.Errorf("%s: image %q, want %q", name, got, img)
		}
	}
	for name, s := range p.Services {
		hc := s.HealthCheck
		if hc == nil || hc.Disable || len(hc.Test) < 2 || hc.Test[0] == "NONE" {
			t.Errorf("%s: no healthcheck", name)
			continue
		}
		if hc.Interval == nil || hc.Timeout == nil || hc.Retries == nil {
			t.Errorf("%s: healthcheck without interval, timeout and retries", name)
		}
	}
	for name, svc := range ours {
		s := p.Services[name]
		if s.Build == nil || s.Build.Args["SERVICE"] == nil || *s.Build.Args["SERVICE"] != svc {
			t.Errorf("%s: not built from the Dockerfile with SERVICE=%s: %+v", name, svc, s.Build)
		} else if s.Build.Context != root || filepath.Base(s.Build.Dockerfile) != "Dockerfile" {
			t.Errorf("%s: build context %q, Dockerfile %q", name, s.Build.Context, s.Build.Dockerfile)
		}
		if !strings.HasPrefix(s.Image, "cryptopulse/"+svc+":") {
			t.Errorf("%s: image %q, want cryptopulse/%s:<tag>", name, s.Image, svc)
		}
		if len(s.EnvFiles) != 1 || s.EnvFiles[0].Path != filepath.Join(root, ".env") {
			t.Errorf("%s: env_file %+v, want .env", name, s.EnvFiles)
		}
		if hc := s.HealthCheck; hc != nil && (len(hc.Test) < 2 || hc.Test[1] != "/healthcheck") {
			t.Errorf("%s: healthcheck %v, want the image's /healthcheck", name, hc.Test)
		}
		if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) <= 15*time.Second {
			t.Errorf("%s: stop_grace_period %v, want more than the services' 15 s drain", name, s.StopGracePeriod)
		}
		if s.Restart != "unless-stopped" && s.Restart != "always" {
			t.Errorf("%s: restart %q", name, s.Restart)
		}
		env := func(k string) string {
			if v := s.Environment[k]; v != nil {
				return *v
			}
			return ""
		}
		for k, v := range map[string]string{"HOST": "0.0.0.0", "PORT": "3000", "REDIS_URL": "redis://redis:6379/0"} {
			if got := env(k); got != v {
				t.Errorf("%s: %s=%q, want %q", name, k, got, v)
			}
		}
		if svc != "auth" && !strings.Contains(env("DATABASE_URL"), "@postgres:5432/") {
			t.Errorf("%s: DATABASE_URL %q does not point at the postgres service", name, env("DATABASE_URL"))
		}
		if env("TRUSTED_PROXIES") == "" {
			t.Errorf("%s: no TRUSTED_PROXIES: nginx's X-Forwarded-For would be ignored", name)
		}
		if len(s.Ports) > 0 {
			t.Errorf("%s publishes %v: only nginx may be reachable from outside", name, s.Ports)
		}
	}
	for name, deps := range wantDeps {
		s := p.Services[name]
		for _, d := range deps {
			if c := s.DependsOn[d].Condition; c != types.ServiceConditionHealthy {
				t.Errorf("%s: depends_on %s condition %q, want service_healthy", name, d, c)
			}
		}
	}

	ng := p.Services["nginx"]
	if len(ng.Ports) != 1 || ng.Ports[0].Target != 80 || ng.Ports[0].Published != "3000" {
		t.Errorf("nginx ports %+v, want 3000:80", ng.Ports)
	}
	mounted := false
	for _, v := range ng.Volumes {
		if v.Type == types.VolumeTypeBind && v.Source == filepath.Join(root, devstack.NginxConfigPath) &&
			v.Target == "/etc/nginx/nginx.conf" && v.ReadOnly {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("nginx volumes %+v, want ./%s:/etc/nginx/nginx.conf:ro", ng.Volumes, devstack.NginxConfigPath)
	}

	// nginx finds its upstreams by name on the compose network: each must
	// be a service or a network alias, listening on the port named.
	names := map[string]string{} // host -> PORT of the service behind it
	for name, s := range p.Services {
		port := "80"
		if v := s.Environment["PORT"]; v != nil {
			port = *v
		}
		names[name] = port
		for _, n := range s.Networks {
			if n != nil {
				for _, a := range n.Aliases {
					names[a] = port
				}
			}
		}
	}
	for _, up := range nginxUpstreamServers(t) {
		host, port, _ := strings.Cut(up, ":")
		if got, ok := names[host]; !ok {
			t.Errorf("nginx upstream server %s: no service or alias %q in this compose file", up, host)
		} else if got != port {
			t.Errorf("nginx upstream server %s: the service listens on PORT %s", up, got)
		}
	}
}

// nginxUpstreamServers returns the host:port of every upstream server line
// of deploy/nginx/nginx.conf.
func nginxUpstreamServers(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, m := range regexp.MustCompile(`(?m)^\s*server\s+([a-z0-9.-]+:\d+)\b`).FindAllStringSubmatch(readNginxConf(t), -1) {
		out = append(out, m[1])
	}
	if len(out) == 0 {
		t.Fatal("nginx.conf has no upstream server lines")
	}
	return out
}

func readNginxConf(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), devstack.NginxConfigPath))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestComposeMulti(t *testing.T) {
	p := loadCompose(t, "docker-compose.multi.yml")
	// Ours, with the SERVICE build argument each must pass.
	ours := map[string]string{"auth": "auth", "gateway-1": "gateway", "gateway-2": "gateway", "fetcher": "fetcher"}
	checkCompose(t, p, ours, map[string][]string{
		"auth":      {"redis"},
		"gateway-1": {"postgres", "redis"},
		"gateway-2": {"postgres", "redis"},
		"fetcher":   {"postgres", "redis"},
		"nginx":     {"auth", "gateway-1", "gateway-2"},
	})
	f := p.Services["fetcher"]
	if n := f.GetScale(); f.Deploy == nil || n != 2 {
		t.Errorf("fetcher: %d replicas, want deploy.replicas: 2", n)
	}
	if f.ContainerName != "" {
		t.Errorf("fetcher has container_name %q: --scale fetcher=N would clash", f.ContainerName)
	}
	ids := map[string]bool{}
	for _, g := range []string{"gateway-1", "gateway-2"} {
		id := p.Services[g].Environment["INSTANCE_ID"]
		if id == nil || ids[*id] {
			t.Errorf("%s: INSTANCE_ID %v missing or shared: X-Instance-Id must tell gateways apart", g, id)
			continue
		}
		ids[*id] = true
	}

	// The offline profile adds the simulator and nothing else.
	sim := loadCompose(t, "docker-compose.multi.yml", "sim")
	s, ok := sim.Services["cgsim"]
	if !ok {
		t.Fatal("--profile sim has no cgsim service")
	}
	if s.Build == nil || s.Build.Args["SERVICE"] == nil || *s.Build.Args["SERVICE"] != "cgsim" {
		t.Errorf("cgsim build %+v", s.Build)
	}
	if s.HealthCheck == nil || len(s.HealthCheck.Test) < 2 {
		t.Error("cgsim: no healthcheck")
	}
	if len(sim.Services) != len(p.Services)+1 {
		t.Errorf("--profile sim: %v", serviceNames(sim))
	}
}

func TestComposeSingle(t *testing.T) {
	p := loadCompose(t, "docker-compose.yml")
	checkCompose(t, p, map[string]string{"auth": "auth", "gateway": "gateway", "fetcher": "fetcher"}, map[string][]string{
		"auth":    {"redis"},
		"gateway": {"postgres", "redis"},
		"fetcher": {"postgres", "redis"},
		"nginx":   {"auth", "gateway"},
	})
	for name, s := range p.Services {
		if n := s.GetScale(); n != 1 {
			t.Errorf("%s: %d replicas in the single-instance file", name, n)
		}
	}
}

// TestDockerfile checks what a build without Docker can: the Go version is
// the one go.work asks for (the golang images will not fetch another), every
// module of go.work is copied before `go mod download`, the binary is static
// and stripped, and the final image is distroless or scratch and runs as a
// non-root user.
func TestDockerfile(t *testing.T) {
	root := repoRoot(t)
	df, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	work, err := os.ReadFile(filepath.Join(root, "go.work"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(df)
	goLine := regexp.MustCompile(`(?m)^go (\S+)`).FindStringSubmatch(string(work))
	arg := regexp.MustCompile(`(?m)^ARG GO_VERSION=(\S+)`).FindStringSubmatch(text)
	if goLine == nil || arg == nil || goLine[1] != arg[1] {
		t.Errorf("Dockerfile GO_VERSION %v, go.work go %v: keep them equal", arg, goLine)
	}
	for _, m := range regexp.MustCompile(`(?m)^\s+\./(\S+)\s*$`).FindAllStringSubmatch(string(work), -1) {
		if !strings.Contains(text, "COPY "+m[1]+"/go.mod") {
			t.Errorf("Dockerfile does not copy %s/go.mod: go.work names it, so the build needs it", m[1])
		}
	}
	froms := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(text, -1)
	if len(froms) < 2 {
		t.Fatalf("want a multi-stage build, got FROM %v", froms)
	}
	final := froms[len(froms)-1][1]
	if !strings.HasPrefix(final, "gcr.io/distroless/static") && final != "scratch" {
		t.Errorf("final stage %s: want distroless static or scratch", final)
	}
	users := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindAllStringSubmatch(text, -1)
	if len(users) == 0 || strings.HasPrefix(users[len(users)-1][1], "0") || strings.HasPrefix(users[len(users)-1][1], "root") {
		t.Errorf("USER %v: the image must run as a non-root user", users)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags="-s -w"`, "ARG SERVICE", "/out/${SERVICE}", "./services/gateway", "./tools/cgsim/cmd/cgsim", "./tools/healthcheck", "go mod download"} {
		if !strings.Contains(text, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}

	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(ignore))
	for _, must := range []string{".env", ".git", ".data"} {
		if !slices.Contains(lines, must) {
			t.Errorf(".dockerignore does not exclude %s", must)
		}
	}
	for _, need := range []string{"go.work", "libs", "services", "tools", "e2e", "*"} {
		if slices.Contains(lines, need) {
			t.Errorf(".dockerignore excludes %s, which the build needs", need)
		}
	}
}

// TestNginxConfigDirectives reads deploy/nginx/nginx.conf for what the
// deployment promises: round robin over both gateways with passive health
// and keepalive, retries of idempotent requests only, the request id passed
// on, enough connections for 10,000 waiting clients, a read timeout longer
// than the batch timeout, /metrics kept in, and JSON error bodies.
func TestNginxConfigDirectives(t *testing.T) {
	// Comments explain what is left out and why; only directives count.
	conf := regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(readNginxConf(t), "")
	has := func(re string) bool { return regexp.MustCompile(`(?m)` + re).MatchString(conf) }
	for _, re := range []string{
		`^\s*upstream gateway \{`,
		`^\s*server gateway-1:3000 .*max_fails=3 fail_timeout=10s`,
		`^\s*server gateway-2:3000 .*max_fails=3 fail_timeout=10s`,
		`^\s*server gateway-1:3000 max_fails=0 backup`,
		`^\s*server gateway-2:3000 max_fails=0 backup`,
		`^\s*server auth:3000 .*max_fails=`,
		`^\s*keepalive \d+;`,
		`^\s*proxy_http_version 1\.1;`,
		`^\s*proxy_set_header Connection "";`,
		`^\s*proxy_set_header Host \$http_host;`,
		`^\s*proxy_set_header X-Real-IP \$remote_addr;`,
		`^\s*proxy_set_header X-Forwarded-For \$remote_addr;`,
		`^\s*proxy_set_header X-Forwarded-Proto \$scheme;`,
		`^\s*proxy_set_header X-Request-Id \$cp_request_id;`,
		`^\s*map \$http_x_request_id \$cp_request_id \{`,
		`^\s*proxy_next_upstream error timeout`,
		`^\s*proxy_next_upstream_tries \d+;`,
		`^\s*location /auth/ \{\s*\n\s*proxy_pass http://auth;`,
		`^\s*location / \{\s*\n\s*proxy_pass http://gateway;`,
		`^\s*location ~ \^/metrics\(/\|\$\) \{`,
		`^\s*listen 80 `,
	} {
		if !has(re) {
			t.Errorf("nginx.conf lacks %s", re)
		}
	}
	if has(`non_idempotent`) {
		t.Error("nginx.conf retries non-idempotent requests: a login could be counted twice")
	}
	if has(`(?i)^\s*(least_conn|ip_hash|hash )`) {
		t.Error("the shipped nginx.conf must balance round robin; variants belong in the .example files")
	}
	num := func(directive string) int {
		m := regexp.MustCompile(`(?m)^\s*` + directive + `\s+(\d+)(s?);`).FindStringSubmatch(conf)
		if m == nil {
			t.Errorf("nginx.conf lacks %s", directive)
			return 0
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	if n := num("worker_connections"); n < 20480 {
		t.Errorf("worker_connections %d: 10,000 clients waiting out a batch need 20,000", n)
	}
	if n := num("worker_rlimit_nofile"); n < num("worker_connections") {
		t.Errorf("worker_rlimit_nofile %d below worker_connections", n)
	}
	if n := num("proxy_read_timeout"); n <= 8 {
		t.Errorf("proxy_read_timeout %ds: must outlast BATCH_RESULT_TIMEOUT_MS (8 s)", n)
	}

	// Every error body nginx makes is JSON in the services' shape.
	bodies := regexp.MustCompile(`(?m)^\s*return (\d{3}) '(.*)';`).FindAllStringSubmatch(conf, -1)
	codes := map[string]bool{}
	for _, m := range bodies {
		var body struct {
			StatusCode int    `json:"statusCode"`
			Message    string `json:"message"`
			Error      string `json:"error"`
		}
		raw := strings.ReplaceAll(m[2], "$request_method", "GET")
		if err := json.Unmarshal([]byte(raw), &body); err != nil {
			t.Errorf("return %s body is not JSON: %v: %s", m[1], err, m[2])
			continue
		}
		// NestJS names 413 by the newer RFC 9110 phrase; Go keeps the old one.
		wantErr := http.StatusText(body.StatusCode)
		if body.StatusCode == http.StatusRequestEntityTooLarge {
			wantErr = "Payload Too Large"
		}
		if strconv.Itoa(body.StatusCode) != m[1] || body.Message == "" || body.Error != wantErr {
			t.Errorf("return %s body %+v: want statusCode, message and error %q", m[1], body, wantErr)
		}
		codes[m[1]] = true
	}
	for _, c := range []string{"404", "502", "503", "504"} {
		if !codes[c] {
			t.Errorf("no JSON body for nginx's own %s", c)
		}
	}
	for _, c := range []string{"502", "503", "504"} {
		if !has(`^\s*error_page ` + c + ` @e` + c + `;`) {
			t.Errorf("nginx's own %s is not answered with JSON (error_page)", c)
		}
	}
	if !has(`^\s*error_page 414 /_errors/414;`) || !has(`^\s*location = /_errors/414 \{\s*\n\s*internal;`) || !codes["414"] {
		t.Error("nginx's own 414 (a request line over its buffers) is not answered with JSON from an internal location")
	}
	if !has(`^\s*error_page 494 =431 @e431;`) || !codes["431"] {
		t.Error("nginx's own 494 (a header over its buffers) is not answered with the gateways' JSON 431")
	}
}

// nginxBinary finds nginx; a missing one fails the test, because a skipped
// check would report a config nobody checked as fine.
func nginxBinary(t *testing.T) string {
	t.Helper()
	for _, c := range []string{"nginx", "/usr/sbin/nginx"} {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	t.Fatal("nginx not found in PATH or /usr/sbin: run scripts/install-deps.sh")
	return ""
}

// nginxVersion returns nginx's version as [major, minor, patch].
func nginxVersion(t *testing.T, bin string) [3]int {
	t.Helper()
	out, err := exec.Command(bin, "-v").CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -v: %v: %s", err, out)
	}
	m := regexp.MustCompile(`nginx/(\d+)\.(\d+)\.(\d+)`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("nginx -v: unexpected %q", out)
	}
	var v [3]int
	for i := range v {
		v[i], _ = strconv.Atoi(m[i+1])
	}
	return v
}

// TestNginxConfigSyntax runs `nginx -t` on deploy/nginx/nginx.conf. Compose
// service names do not resolve here, so the upstream server lines are
// pointed at loopback ports with devstack's rewrite, the same one make run
// uses; that also drops "resolve", which needs nginx 1.27.3 (the image has
// it, Debian 12's nginx 1.22 does not). On an nginx that new enough, the
// file is also checked with only its paths changed, "resolve" and all.
func TestNginxConfigSyntax(t *testing.T) {
	bin := nginxBinary(t)
	src := []byte(readNginxConf(t))
	dir := t.TempDir()
	for _, d := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := os.MkdirAll(filepath.Join(dir, "temp", d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "root"
	}
	local, err := devstack.LocalNginxConfig(src, devstack.NginxLocal{
		Listen:   "127.0.0.1:1",
		Gateways: []string{"127.0.0.1:2", "127.0.0.1:3"},
		Auths:    []string{"127.0.0.1:4"},
		Dir:      dir,
		User:     user,
	})
	if err != nil {
		t.Fatal(err)
	}
	nginxTest(t, bin, dir, "local.conf", local)

	// The balancing variants the README offers must work when pasted in.
	examples, _ := filepath.Glob(filepath.Join(repoRoot(t), "deploy", "nginx", "*.conf.example"))
	if len(examples) < 2 {
		t.Errorf("want the least_conn and ip_hash variants in deploy/nginx, found %v", examples)
	}
	for _, ex := range examples {
		snippet, err := os.ReadFile(ex)
		if err != nil {
			t.Fatal(err)
		}
		variant, err := replaceBlock(src, snippetBlock(t, snippet, ex))
		if err != nil {
			t.Fatalf("%s: %v", ex, err)
		}
		conf, err := devstack.LocalNginxConfig(variant, devstack.NginxLocal{
			Listen: "127.0.0.1:1", Gateways: []string{"127.0.0.1:2", "127.0.0.1:3"}, Auths: []string{"127.0.0.1:4"}, Dir: dir, User: user,
		})
		if err != nil {
			t.Fatalf("%s: %v", ex, err)
		}
		nginxTest(t, bin, dir, filepath.Base(ex), conf)
	}

	if v := nginxVersion(t, bin); v[0] > 1 || v[0] == 1 && (v[1] > 27 || v[1] == 27 && v[2] >= 3) {
		asIs := regexp.MustCompile(`(?m)^user nginx;`).ReplaceAll(src, []byte("user "+cmp.Or(user, "nobody")+";"))
		asIs = bytes.Replace(asIs, []byte("listen 80 "), []byte("listen 127.0.0.1:1 "), 1)
		asIs = append([]byte("pid "+filepath.Join(dir, "nginx.pid")+";\n"), asIs...)
		nginxTest(t, bin, dir, "as-is.conf", asIs)
	} else {
		t.Logf("nginx %d.%d.%d predates 1.27.3: checked the loopback rewrite only", v[0], v[1], v[2])
	}
}

// gatewayBlock matches the "upstream gateway { ... }" block; it holds no
// nested braces.
var gatewayBlock = regexp.MustCompile(`(?ms)^[ \t]*upstream gateway \{.*?^[ \t]*\}[ \t]*$`)

// snippetBlock returns the upstream gateway block of an example file.
func snippetBlock(t *testing.T, snippet []byte, name string) []byte {
	t.Helper()
	b := gatewayBlock.Find(snippet)
	if b == nil {
		t.Fatalf("%s has no upstream gateway block", name)
	}
	return b
}

// replaceBlock swaps nginx.conf's upstream gateway block for block.
func replaceBlock(conf, block []byte) ([]byte, error) {
	loc := gatewayBlock.FindIndex(conf)
	if loc == nil {
		return nil, fmt.Errorf("nginx.conf has no upstream gateway block")
	}
	return slices.Concat(conf[:loc[0]], block, conf[loc[1]:]), nil
}

// nginxTest writes conf into dir and runs nginx -t on it.
func nginxTest(t *testing.T, bin, dir, name string, conf []byte) {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-t", "-q", "-p", dir+"/", "-e", "stderr", "-c", path).CombinedOutput()
	if err != nil {
		t.Errorf("nginx -t %s: %v\n%s\n--- config:\n%s", name, err, out, conf)
	}
	if bytes.Contains(out, []byte("[emerg]")) || bytes.Contains(out, []byte("[warn]")) {
		t.Errorf("nginx -t %s warns:\n%s", name, out)
	}
}

// doRequest makes one request and returns status, X-Instance-Id and body.
func doRequest(t *testing.T, client *http.Client, method, url, token, body string) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Instance-Id"), b
}

// TestDevstack runs the real services behind the real nginx with the
// shipped config and checks what the local topology promises: load spread
// over both gateways, one gateway stopped and started again without a failed
// request, and a fetcher added while running that joins the group and takes
// over the work.
func TestDevstack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := startStack(t, devstack.Config{Nginx: true})
	client := &http.Client{Timeout: 15 * time.Second}

	t.Run("both gateways answer through nginx", func(t *testing.T) {
		seen := map[string]int{}
		for range 20 {
			code, inst, b := doRequest(t, client, http.MethodGet, s.URL+"/health", "", "")
			if code != 200 {
				t.Fatalf("/health: %d %s", code, b)
			}
			seen[inst]++
		}
		if seen["gateway-1"] < 5 || seen["gateway-2"] < 5 || len(seen) != 2 {
			t.Errorf("20 requests answered by %v; want both gateways, evenly", seen)
		}
	})

	token := login(t, s)
	price := func(t *testing.T, coin string) (int, string, []byte) {
		t.Helper()
		return doRequest(t, client, http.MethodGet, s.URL+"/v1/price/"+coin, token, "")
	}

	t.Run("metrics stay internal", func(t *testing.T) {
		code, _, b := doRequest(t, client, http.MethodGet, s.URL+"/metrics", "", "")
		if code != 404 || !json.Valid(b) {
			t.Errorf("/metrics through nginx: %d %s", code, b)
		}
		if code, _, _ := doRequest(t, client, http.MethodGet, s.Gateways[0].URL()+"/metrics", "", ""); code != 200 {
			t.Errorf("/metrics on the gateway's own port: %d", code)
		}
	})

	t.Run("gateway stop and start", func(t *testing.T) {
		g := s.Gateways[0]
		if err := g.Stop(ctx); err != nil {
			t.Fatalf("graceful stop: %v", err)
		}
		for i := range 10 {
			if code, inst, b := doRequest(t, client, http.MethodGet, s.URL+"/health", "", ""); code != 200 || inst != "gateway-2" {
				t.Fatalf("request %d with gateway-1 stopped: %d from %q: %s", i, code, inst, b)
			}
		}
		if err := g.Start(ctx); err != nil {
			t.Fatal(err)
		}
		// nginx tries it again once fail_timeout (10 s) has passed.
		deadline := time.Now().Add(20 * time.Second)
		for {
			code, inst, _ := doRequest(t, client, http.MethodGet, s.URL+"/health", "", "")
			if code != 200 {
				t.Fatalf("after restart: %d", code)
			}
			if inst == g.Name {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("restarted gateway-1 gets no traffic")
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("added fetcher takes the work", func(t *testing.T) {
		f, err := s.AddFetcher(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if f.Name != "fetcher-3" {
			t.Errorf("added %s", f.Name)
		}
		// With the original two gone, every batch is the new one's.
		for _, old := range s.Fetchers[:2] {
			if err := old.Stop(ctx); err != nil {
				t.Fatalf("stop %s: %v", old.Name, err)
			}
		}
		callsBefore := simCalls(t, s).Calls
		var wg sync.WaitGroup
		type answer struct {
			code int
			body []byte
		}
		answers := make([]answer, 3)
		for i := range answers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, _, b := price(t, "cardano")
				answers[i] = answer{code, b}
			}()
		}
		wg.Wait()
		for _, a := range answers {
			var body struct {
				Batch struct {
					Fetcher string `json:"fetcher"`
				} `json:"batch"`
			}
			_ = json.Unmarshal(a.body, &body)
			if a.code != 200 || body.Batch.Fetcher != f.Name {
				t.Errorf("price with only %s running: %d %s", f.Name, a.code, a.body)
			}
		}
		if n := simCalls(t, s).Calls - callsBefore; n != 1 {
			t.Errorf("3 requests for one coin made %d upstream calls, want 1", n)
		}
		for _, old := range s.Fetchers[:2] {
			if err := old.Start(ctx); err != nil {
				t.Fatal(err)
			}
		}
	})
}
