package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestDotEnvFillsWhatTheEnvironmentLeavesUnset(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".env")
	content := "# comment\nPORT=3000   # the port\nexport LOG_LEVEL=debug\nJWT_SECRET=\"quoted # not a comment\"\nEMPTY=\nADMIN_USER=from-file\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"ADMIN_USER": "from-env"}
	get, err := WithDotEnv(func(k string) string { return env[k] }, path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"PORT": "3000", "LOG_LEVEL": "debug", "JWT_SECRET": "quoted # not a comment", "EMPTY": "", "ADMIN_USER": "from-env"}
	for k, v := range want {
		if got := get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if _, err := WithDotEnv(get, filepath.Join(t.TempDir(), "missing")); err != nil {
		t.Errorf("a missing .env is fine: %v", err)
	}
}

func TestReaderNamesEveryBadVariable(t *testing.T) {
	env := map[string]string{"PORT": "http", "BATCH_WINDOW_MS": "-5", "JWT_SECRET": "short", "TRUSTED_PROXIES": "10.0.0.0/8,nonsense", "LOG_LEVEL": "loud"}
	r := NewReader(func(k string) string { return env[k] })
	LoadBase(r, 3000)
	r.Millis("BATCH_WINDOW_MS", time.Second, time.Millisecond, time.Hour)
	r.Secret("JWT_SECRET", 32)
	r.Required("ADMIN_USER")
	err := r.Err()
	if err == nil {
		t.Fatal("no error")
	}
	for _, name := range []string{"PORT", "BATCH_WINDOW_MS", "JWT_SECRET", "TRUSTED_PROXIES", "LOG_LEVEL", "ADMIN_USER"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

func TestMasking(t *testing.T) {
	if got := MaskURL("postgres://u:secret@h:5432/db"); strings.Contains(got, "secret") {
		t.Errorf("MaskURL leaked: %s", got)
	}
	if got := Mask("abc"); strings.Contains(got, "abc") {
		t.Errorf("Mask leaked: %s", got)
	}
}

func TestURLsAndInstanceIDsAreChecked(t *testing.T) {
	env := map[string]string{"REDIS_URL": "localhost:6379", "INSTANCE_ID": "gateway 1", "DATABASE_URL": "mysql://x@h/db"}
	r := NewReader(func(k string) string { return env[k] })
	LoadBase(r, 3000)
	r.URL("DATABASE_URL", "", "postgres", "postgresql")
	err := r.Err()
	for _, name := range []string{"REDIS_URL", "INSTANCE_ID", "DATABASE_URL"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

func TestDotEnvValue(t *testing.T) {
	for in, want := range map[string]string{
		"3000":                         "3000",
		"3000                # a port": "3000",
		"3000\t# a port":               "3000",
		`"a # b"   # comment`:          "a # b",
		"'quoted'":                     "quoted",
		"":                             "",
		"# only a comment":             "",
		"pa#ss":                        "pa#ss",
		"two words # c":                "two words",
	} {
		if got := dotEnvValue(in); got != want {
			t.Errorf("dotEnvValue(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSentinelSettings(t *testing.T) {
	env := map[string]string{"REDIS_SENTINELS": " 10.0.0.5:26379, s2:26379 ,", "REDIS_SENTINEL_PASSWORD": "sentinel-secret",
		"REDIS_URL": "redis://:redis-secret@mymaster/2"}
	r := NewReader(func(k string) string { return env[k] })
	b := LoadBase(r, 3000)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(b.RedisSentinels, "|") != "10.0.0.5:26379|s2:26379" || b.RedisMasterName != "mymaster" {
		t.Errorf("sentinels %q master %q", b.RedisSentinels, b.RedisMasterName)
	}
	if got := b.RedisTarget(); strings.Contains(got, "secret") || !strings.Contains(got, "s2:26379") {
		t.Errorf("RedisTarget leaks or omits: %s", got)
	}
	if got := (Base{RedisURL: "redis://:pw@h:1/0"}).RedisTarget(); got != "redis://:***@h:1/0" {
		t.Errorf("single Redis target %q", got)
	}

	env = map[string]string{"REDIS_SENTINELS": "10.0.0.5,h:99999", "REDIS_MASTER_NAME": "my master"}
	r = NewReader(func(k string) string { return env[k] })
	LoadBase(r, 3000)
	err := r.Err()
	for _, want := range []string{`REDIS_SENTINELS: "10.0.0.5"`, `REDIS_SENTINELS: "h:99999"`, "REDIS_MASTER_NAME"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %s: %v", want, err)
		}
	}
}

func TestLoopbackAddr(t *testing.T) {
	for addr, ok := range map[string]bool{"": true, "127.0.0.1:6060": true, "[::1]:6060": true, "localhost:6060": true,
		"0.0.0.0:6060": false, "10.0.0.1:6060": false, "6060": false} {
		r := NewReader(func(k string) string { return map[string]string{"PPROF_ADDR": addr}[k] })
		got := r.LoopbackAddr("PPROF_ADDR")
		if err := r.Err(); (err == nil) != ok || (err != nil && !strings.Contains(err.Error(), "PPROF_ADDR")) {
			t.Errorf("%q: err %v, want ok=%v", addr, err, ok)
		}
		if ok && got != addr {
			t.Errorf("%q: got %q", addr, got)
		}
	}
}

// A copy of .env.example started unedited must not run: its JWT_SECRET and
// ADMIN_PASS are public. The values are read from the file itself, so the
// check follows the example if it changes.
func TestExamplePlaceholdersAreRefused(t *testing.T) {
	example, err := ReadDotEnv(filepath.Join("..", "..", ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	if len(example) == 0 {
		t.Fatal(".env.example not found or empty")
	}
	r := NewReader(func(k string) string { return example[k] })
	r.Secret("JWT_SECRET", 32)
	r.Required("ADMIN_PASS")
	r.Required("ADMIN_USER")
	err = r.Err()
	if err == nil {
		t.Fatal("the example's JWT_SECRET and ADMIN_PASS were accepted")
	}
	for _, want := range []string{
		"JWT_SECRET: is still the example value",
		"ADMIN_PASS: is still the example value",
		"openssl rand -hex 32",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "ADMIN_USER") {
		t.Errorf("ADMIN_USER=admin is a user name, not a secret: %v", err)
	}

	good := map[string]string{"JWT_SECRET": "0123456789abcdef0123456789abcdef", "ADMIN_PASS": "admin"}
	r = NewReader(func(k string) string { return good[k] })
	r.Secret("JWT_SECRET", 32)
	r.Required("ADMIN_PASS")
	if err := r.Err(); err != nil {
		t.Errorf("values of one's own refused: %v", err)
	}
}

// Docker's env_file (compose) keeps an inline comment after an empty value
// as the value itself, so a user's unedited `cp .env.example .env` would
// stop the service; the Docker guide test found it. Every empty value in
// .env.example must stand alone on its line.
func TestEnvExampleHasNoCommentAfterAnEmptyValue(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	emptyThenComment := regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=\s+#`)
	for i, line := range strings.Split(string(raw), "\n") {
		if emptyThenComment.MatchString(line) {
			t.Errorf(".env.example:%d: %q: env_file would read the comment as the value", i+1, line)
		}
	}
}
