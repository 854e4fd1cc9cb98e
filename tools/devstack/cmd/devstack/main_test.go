package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestServiceEnv(t *testing.T) {
	root := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(root, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(".env.example", "PORT=3000 # port\nBATCH_POLL_MS=100\nLOG_LEVEL=info\n")
	write(".env", "PORT=4000\nREDIS_URL=redis://redis:6379/0\nJWT_SECRET=from-dotenv # secret\nLOG_LEVEL=warn\n")
	env, err := serviceEnv(root, func(k string) string {
		return map[string]string{"BATCH_POLL_MS": "50", "LOG_LEVEL": "debug", "UNRELATED": "x", "PORT": "5000"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"JWT_SECRET": "from-dotenv", "LOG_LEVEL": "debug", "BATCH_POLL_MS": "50"}
	if len(env) != len(want) {
		t.Errorf("env %v, want %v", env, want)
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s=%q, want %q (env %v)", k, env[k], v, env)
		}
	}
}
