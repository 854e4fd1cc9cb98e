package k8s

import (
	"os"
	"regexp"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
)

// directive is one nginx directive, with its block if it has one.
type directive struct {
	name  string
	args  []string
	block []directive
}

// parseNginx reads nginx.conf into directives: enough of the grammar for
// our file (comments, quotes, blocks), not a general nginx parser.
func parseNginx(t *testing.T, path string) []directive {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var toks []string
	s := string(raw)
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '{' || c == '}' || c == ';':
			toks = append(toks, string(c))
			i++
		case c == '"' || c == '\'':
			j := strings.IndexByte(s[i+1:], c)
			if j < 0 {
				t.Fatalf("%s: unterminated quote", path)
			}
			toks = append(toks, s[i+1:i+1+j])
			i += j + 2
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\r\n{};", rune(s[j])) {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		}
	}
	pos := 0
	var parse func() []directive
	parse = func() []directive {
		var out []directive
		for pos < len(toks) {
			if toks[pos] == "}" {
				pos++
				return out
			}
			d := directive{name: toks[pos]}
			pos++
			for pos < len(toks) && toks[pos] != ";" && toks[pos] != "{" {
				d.args = append(d.args, toks[pos])
				pos++
			}
			if pos < len(toks) && toks[pos] == "{" {
				pos++
				d.block = parse()
			} else {
				pos++
			}
			out = append(out, d)
		}
		return out
	}
	return parse()
}

func find(ds []directive, name string) []directive {
	var out []directive
	for _, d := range ds {
		if d.name == name {
			out = append(out, d)
		}
	}
	return out
}

// nginxServer is the one server block of nginx.conf.
func nginxServer(t *testing.T) []directive {
	t.Helper()
	top := parseNginx(t, repoRoot+"/deploy/nginx/nginx.conf")
	http := find(top, "http")
	if len(http) != 1 {
		t.Fatal("nginx.conf: want one http block")
	}
	servers := find(http[0].block, "server")
	if len(servers) != 1 {
		t.Fatal("nginx.conf: want one server block")
	}
	return servers[0].block
}

// nginxRoute says where nginx.conf sends path: an upstream's name, "blocked"
// for a location that answers 4xx itself, "local" for one that answers 2xx
// itself (nginx's own health), "internal" for one only nginx's own
// error_page reaches (a client asking for it gets a 404, as a gateway gives
// for an unknown path), following nginx's order: exact, then the longest
// prefix unless a regex matches.
func nginxRoute(t *testing.T, server []directive, path string) string {
	t.Helper()
	var best *directive
	bestLen := -1
	var regexHit *directive
	for i, loc := range find(server, "location") {
		d := &find(server, "location")[i]
		switch {
		case len(loc.args) == 2 && loc.args[0] == "=":
			if loc.args[1] == path {
				return nginxTarget(t, *d)
			}
		case len(loc.args) == 2 && (loc.args[0] == "~" || loc.args[0] == "~*"):
			re := loc.args[1]
			if loc.args[0] == "~*" {
				re = "(?i)" + re
			}
			if regexHit == nil && regexp.MustCompile(re).MatchString(path) {
				regexHit = d
			}
		case len(loc.args) == 1 && !strings.HasPrefix(loc.args[0], "@"):
			if strings.HasPrefix(path, loc.args[0]) && len(loc.args[0]) > bestLen {
				best, bestLen = d, len(loc.args[0])
			}
		}
	}
	if regexHit != nil {
		return nginxTarget(t, *regexHit)
	}
	if best == nil {
		t.Fatalf("nginx.conf: no location matches %s", path)
	}
	return nginxTarget(t, *best)
}

func nginxTarget(t *testing.T, loc directive) string {
	t.Helper()
	if len(find(loc.block, "internal")) > 0 {
		return "internal"
	}
	if p := find(loc.block, "proxy_pass"); len(p) == 1 {
		return strings.TrimPrefix(p[0].args[0], "http://")
	}
	if r := find(loc.block, "return"); len(r) == 1 {
		if strings.HasPrefix(r[0].args[0], "2") {
			return "local"
		}
		return "blocked"
	}
	t.Fatalf("nginx.conf: location %v neither proxies nor returns", loc.args)
	return ""
}

// ingressRoute says where ingress-nginx sends path given every Ingress of
// the overlay (it merges them into one server): the Service, or "blocked"
// for a path whose Ingress denies every client address. Exact paths first,
// then the longest match; Prefix matches whole path elements, and
// ImplementationSpecific is ingress-nginx's plain nginx prefix location.
func ingressRoute(t *testing.T, ings map[string]*networkingv1.Ingress, path string) string {
	t.Helper()
	best, bestLen, exact := "", -1, false
	for _, ing := range ings {
		target := func(b networkingv1.IngressBackend) string {
			if deny := ing.Annotations["nginx.ingress.kubernetes.io/denylist-source-range"]; strings.Contains(deny, "0.0.0.0/0") && strings.Contains(deny, "::/0") {
				return "blocked"
			}
			if b.Service == nil {
				t.Fatalf("Ingress %s: a backend without a Service", ing.Name)
			}
			return b.Service.Name
		}
		if ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName != "nginx" {
			t.Errorf("Ingress %s: ingressClassName should be nginx", ing.Name)
		}
		for _, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			for _, p := range rule.HTTP.Paths {
				if p.PathType == nil {
					t.Fatalf("Ingress %s: path %s has no pathType", ing.Name, p.Path)
				}
				var ok bool
				switch *p.PathType {
				case networkingv1.PathTypeExact:
					if p.Path == path {
						return target(p.Backend)
					}
				case networkingv1.PathTypePrefix:
					pre := strings.TrimSuffix(p.Path, "/")
					ok = pre == "" || path == pre || strings.HasPrefix(path, pre+"/")
				case networkingv1.PathTypeImplementationSpecific:
					ok = strings.HasPrefix(path, p.Path)
				}
				if ok && len(p.Path) > bestLen && !exact {
					best, bestLen = target(p.Backend), len(p.Path)
				}
			}
		}
	}
	if best == "" {
		t.Fatalf("no Ingress path matches %s", path)
	}
	return best
}

// TestIngressRoutesLikeNginx: for the paths nginx.conf names, the routes the
// services serve and a few neighbours, the Ingress sends a request where
// nginx.conf does, and /metrics is not exposed. nginx's own /nginx-health
// has no counterpart (ingress-nginx has its /healthz on its own port).
func TestIngressRoutesLikeNginx(t *testing.T) {
	server := nginxServer(t)
	samples := map[string]bool{"/": true, "/auth": true, "/authx": true, "/metrics": true, "/metrics/": true,
		"/metrics/x": true, "/metricsx": true, "/v1/price/bitcoin": true, "/v1/price/bitcoin/history": true}
	for _, loc := range find(server, "location") {
		if len(loc.args) == 1 && strings.HasPrefix(loc.args[0], "/") {
			samples[loc.args[0]] = true
			samples[loc.args[0]+"x/y"] = true
		}
		if len(loc.args) == 2 && loc.args[0] == "=" {
			samples[loc.args[1]] = true
		}
	}
	for _, routes := range routesServed(t) {
		for r := range routes {
			samples[strings.ReplaceAll(r, ":", "")] = true
		}
	}
	for _, ov := range overlays {
		o := render(t, ov)
		for _, p := range sortedKeys(samples) {
			want := nginxRoute(t, server, p)
			if want == "local" || want == "internal" {
				continue
			}
			if got := ingressRoute(t, o.Ingresses, p); got != want {
				t.Errorf("%s: %s goes to %s through the Ingress, to %s through nginx.conf", ov, p, got, want)
			}
		}
		for _, p := range []string{"/metrics", "/metrics/x"} {
			if got := ingressRoute(t, o.Ingresses, p); got != "blocked" {
				t.Errorf("%s: %s is exposed through the Ingress (goes to %s)", ov, p, got)
			}
		}
		for name, ing := range o.Ingresses {
			for _, rule := range ing.Spec.Rules {
				for _, p := range rule.HTTP.Paths {
					s := o.Services[p.Backend.Service.Name]
					if s == nil {
						t.Errorf("%s: Ingress %s: no Service %s", ov, name, p.Backend.Service.Name)
						continue
					}
					found := false
					for _, sp := range s.Spec.Ports {
						found = found || sp.Name == p.Backend.Service.Port.Name || sp.Port == p.Backend.Service.Port.Number
					}
					if !found {
						t.Errorf("%s: Ingress %s: Service %s has no port %v", ov, name, s.Name, p.Backend.Service.Port)
					}
				}
			}
		}
	}
}

// TestIngressProxiesLikeNginx: ingress-nginx gets nginx.conf's timeouts,
// body limit and retry rules, and reads for longer than a price request
// may wait.
func TestIngressProxiesLikeNginx(t *testing.T) {
	server := nginxServer(t)
	one := func(name string) string {
		ds := find(server, name)
		if len(ds) != 1 {
			t.Fatalf("nginx.conf: want one %s in the server block", name)
		}
		return strings.Join(ds[0].args, " ")
	}
	top := parseNginx(t, repoRoot+"/deploy/nginx/nginx.conf")
	bodySize := strings.Join(find(find(top, "http")[0].block, "client_max_body_size")[0].args, " ")
	want := map[string]string{
		"proxy-connect-timeout":       strings.TrimSuffix(one("proxy_connect_timeout"), "s"),
		"proxy-send-timeout":          strings.TrimSuffix(one("proxy_send_timeout"), "s"),
		"proxy-read-timeout":          strings.TrimSuffix(one("proxy_read_timeout"), "s"),
		"proxy-next-upstream":         one("proxy_next_upstream"),
		"proxy-next-upstream-tries":   one("proxy_next_upstream_tries"),
		"proxy-next-upstream-timeout": strings.TrimSuffix(one("proxy_next_upstream_timeout"), "s"),
		"proxy-body-size":             bodySize,
	}
	for _, ov := range overlays {
		o := render(t, ov)
		ing := o.Ingresses["cryptopulse"]
		if ing == nil {
			t.Fatalf("%s: no Ingress cryptopulse", ov)
		}
		for k, v := range want {
			if got := ing.Annotations["nginx.ingress.kubernetes.io/"+k]; got != v {
				t.Errorf("%s: Ingress annotation %s = %q, nginx.conf says %q", ov, k, got, v)
			}
		}
		env := o.ConfigMap(t, o.Deployments["gateway"].Spec.Template.Spec.Containers[0].EnvFrom[0].ConfigMapRef.Name).Data
		read := mustInt(t, ov, map[string]string{"v": want["proxy-read-timeout"]}, "v")
		if wait := mustInt(t, ov, env, "BATCH_RESULT_TIMEOUT_MS"); read*1000 <= wait {
			t.Errorf("%s: proxy-read-timeout %d s is not longer than BATCH_RESULT_TIMEOUT_MS %d", ov, read, wait)
		}
	}
}

// TestIngressStreamsLikeNginx: the event stream passes unbuffered through
// nginx.conf and the Ingress alike, with reads that outlast the gateways'
// heartbeat, and nginx.conf's access log never records a token.
func TestIngressStreamsLikeNginx(t *testing.T) {
	const path = "/v1/prices/stream"
	var loc *directive
	for _, l := range find(nginxServer(t), "location") {
		if len(l.args) == 2 && l.args[0] == "=" && l.args[1] == path {
			loc = &l
		}
	}
	if loc == nil {
		t.Fatalf("nginx.conf: no location = %s", path)
	}
	one := func(name string) string {
		ds := find(loc.block, name)
		if len(ds) != 1 {
			t.Fatalf("nginx.conf: want one %s in location = %s", name, path)
		}
		return strings.Join(ds[0].args, " ")
	}
	if b := one("proxy_buffering"); b != "off" {
		t.Errorf("nginx.conf: proxy_buffering %s for the stream, want off", b)
	}
	read := strings.TrimSuffix(one("proxy_read_timeout"), "s")
	top := parseNginx(t, repoRoot+"/deploy/nginx/nginx.conf")
	for _, f := range find(find(top, "http")[0].block, "log_format") {
		if strings.Contains(strings.Join(f.args, ""), "$request_uri") || strings.Contains(strings.Join(f.args, ""), "$args") {
			t.Errorf("nginx.conf: log_format %s records the raw query, access_token included", f.args[0])
		}
	}
	for _, ov := range overlays {
		o := render(t, ov)
		ing := o.Ingresses["cryptopulse-stream"]
		if ing == nil {
			t.Fatalf("%s: no Ingress cryptopulse-stream", ov)
		}
		for k, v := range map[string]string{"proxy-buffering": "off", "proxy-read-timeout": read} {
			if got := ing.Annotations["nginx.ingress.kubernetes.io/"+k]; got != v {
				t.Errorf("%s: stream Ingress annotation %s = %q, nginx.conf says %q", ov, k, got, v)
			}
		}
		env := o.ConfigMap(t, o.Deployments["gateway"].Spec.Template.Spec.Containers[0].EnvFrom[0].ConfigMapRef.Name).Data
		secs := mustInt(t, ov, map[string]string{"v": read}, "v")
		if beat := mustInt(t, ov, env, "STREAM_HEARTBEAT_MS"); secs*1000 <= beat {
			t.Errorf("%s: the stream's read timeout %d s is not longer than STREAM_HEARTBEAT_MS %d", ov, secs, beat)
		}
		if got := ingressRoute(t, o.Ingresses, path); got != "gateway" {
			t.Errorf("%s: %s goes to %s through the Ingress", ov, path, got)
		}
	}
}
