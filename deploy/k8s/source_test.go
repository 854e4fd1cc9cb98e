package k8s

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// repoRoot is the repository, seen from this package's directory.
const repoRoot = "../.."

// services are the Go services with a Deployment each, by directory name.
var services = []string{"auth", "gateway", "fetcher"}

// parseDir parses the non-test Go files of one directory (not its
// subdirectories).
func parseDir(t *testing.T, dir string) []*ast.File {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatalf("parse %s: %v", name, err)
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		t.Fatalf("no Go files in %s", dir)
	}
	return files
}

// readerMethods are the methods of libs/config's *Reader that read one
// variable: those whose first parameter is the variable's name, "key".
// Taken from the source, so a new kind of setting is covered at once.
func readerMethods(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, f := range parseDir(t, filepath.Join(repoRoot, "libs/config")) {
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Recv == nil || !fd.Name.IsExported() || len(fd.Recv.List) != 1 {
				continue
			}
			star, ok := fd.Recv.List[0].Type.(*ast.StarExpr)
			if !ok {
				continue
			}
			if id, ok := star.X.(*ast.Ident); !ok || id.Name != "Reader" {
				continue
			}
			ps := fd.Type.Params.List
			if len(ps) > 0 && len(ps[0].Names) > 0 && ps[0].Names[0].Name == "key" {
				out[fd.Name.Name] = true
			}
		}
	}
	if !out["String"] || !out["Int"] || !out["Millis"] {
		t.Fatalf("libs/config: expected Reader methods String, Int, Millis taking a key; found %v", out)
	}
	return out
}

// literalKeys returns the string literals passed as the first argument of
// calls to one of methods within n.
func literalKeys(n ast.Node, methods map[string]bool) []string {
	var keys []string
	ast.Inspect(n, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || !methods[sel.Sel.Name] {
			return true
		}
		if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
			if s, err := strconv.Unquote(lit.Value); err == nil {
				keys = append(keys, s)
			}
		}
		return true
	})
	return keys
}

// packageCalls returns the names of the functions of package pkg (by its
// import name) that files call, as in config.LoadBase.
func packageCalls(files []*ast.File, pkg string) map[string]bool {
	out := map[string]bool{}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			if call, ok := n.(*ast.CallExpr); ok {
				if sel, ok := call.Fun.(*ast.SelectorExpr); ok {
					if id, ok := sel.X.(*ast.Ident); ok && id.Name == pkg {
						out[sel.Sel.Name] = true
					}
				}
			}
			return true
		})
	}
	return out
}

// funcKeys maps each function of files to what literalKeys finds in it.
func funcKeys(files []*ast.File, methods map[string]bool) map[string][]string {
	out := map[string][]string{}
	for _, f := range files {
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil && fd.Body != nil {
				out[fd.Name.Name] = append(out[fd.Name.Name], literalKeys(fd.Body, methods)...)
			}
		}
	}
	return out
}

// settingsRead returns, per service, every environment variable its config
// loader reads: the Reader calls with a literal name in services/<name>, plus
// those inside the libs/config functions it calls (config.LoadBase).
func settingsRead(t *testing.T) map[string][]string {
	t.Helper()
	methods := readerMethods(t)
	shared := funcKeys(parseDir(t, filepath.Join(repoRoot, "libs/config")), methods)
	out := map[string][]string{}
	for _, svc := range services {
		files := parseDir(t, filepath.Join(repoRoot, "services", svc))
		set := map[string]bool{}
		for _, f := range files {
			for _, k := range literalKeys(f, methods) {
				set[k] = true
			}
		}
		for fn := range packageCalls(files, "config") {
			for _, k := range shared[fn] {
				set[k] = true
			}
		}
		// Without type information a zap.String("addr", ...) looks like
		// r.String: variable names are upper case, log fields are not.
		for k := range set {
			if !isEnvName(k) {
				delete(set, k)
			}
		}
		if !set["PORT"] || !set["REDIS_URL"] {
			t.Fatalf("services/%s: found no PORT or REDIS_URL read (found %v): has the config loader moved?", svc, set)
		}
		out[svc] = sortedKeys(set)
	}
	return out
}

// routesServed returns, per service, the literal paths it registers with
// Get, Post and the like, its own and those of the libs/web functions it
// calls (web.Probes gives /health and /ready, web.Metrics /metrics).
func routesServed(t *testing.T) map[string]map[string]bool {
	t.Helper()
	verbs := map[string]bool{"Get": true, "Post": true, "Put": true, "Delete": true, "Patch": true, "Head": true, "All": true}
	web := funcKeys(parseDir(t, filepath.Join(repoRoot, "libs/web")), verbs)
	out := map[string]map[string]bool{}
	for _, svc := range services {
		files := parseDir(t, filepath.Join(repoRoot, "services", svc))
		set := map[string]bool{}
		for _, f := range files {
			for _, p := range literalKeys(f, verbs) {
				if strings.HasPrefix(p, "/") {
					set[p] = true
				}
			}
		}
		for fn := range packageCalls(files, "web") {
			for _, p := range web[fn] {
				if strings.HasPrefix(p, "/") {
					set[p] = true
				}
			}
		}
		if !set["/health"] {
			t.Fatalf("services/%s: found no /health route (found %v): has web.Probes moved?", svc, set)
		}
		out[svc] = set
	}
	return out
}

// dotEnv reads KEY=value lines the way .env.example writes them, including
// commented-out settings ("# KEY=value # comment"), which document a
// variable whose default is left alone.
func dotEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		line = strings.TrimSpace(strings.TrimPrefix(line, "#"))
		k, v, ok := strings.Cut(line, "=")
		if !ok || !isEnvName(k) {
			continue
		}
		if i := strings.Index(v, " #"); i >= 0 {
			v = v[:i]
		}
		if i := strings.Index(v, "\t#"); i >= 0 {
			v = v[:i]
		}
		out[k] = strings.TrimSpace(v)
	}
	return out
}

func isEnvName(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for _, c := range s {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
