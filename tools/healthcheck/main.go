// Command healthcheck is the container healthcheck of the CryptoPulse
// images, which are distroless: no shell, no curl, no wget. It GETs one URL
// and exits 0 on a 2xx answer, 1 on anything else.
//
//	healthcheck [URL]
//
// URL defaults to http://127.0.0.1:$PORT/health (PORT defaults to 3000, as
// in the services).
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// timeout stays below the compose healthcheck timeout, so a hung service is
// reported by us with a reason rather than killed by Docker without one.
const timeout = 2 * time.Second

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Getenv, os.Stderr))
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	url := ""
	switch len(args) {
	case 0:
		port := getenv("PORT")
		if port == "" {
			port = "3000"
		}
		url = "http://127.0.0.1:" + port + "/health"
	case 1:
		url = args[0]
	default:
		fmt.Fprintln(stderr, "usage: healthcheck [URL]")
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// The body names what is down (/ready lists the dependencies);
		// docker inspect shows it.
		fmt.Fprintf(stderr, "healthcheck: GET %s: %s %s\n", url, resp.Status, body)
		return 1
	}
	return 0
}
