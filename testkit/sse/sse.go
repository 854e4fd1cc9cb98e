// Package sse reads Server-Sent Events as a browser's EventSource does, for
// tests, benchmarks and tools that follow GET /v1/prices/stream.
package sse

import (
	"bufio"
	"io"
	"strings"
)

// Event is one dispatched event, or a comment line (Comment set, the rest empty).
type Event struct {
	ID, Event, Data, Retry string
	Comment                string
}

// Read parses r and hands each event and comment to fn until r ends or fn
// returns false; it returns r's error (nil at a clean end).
func Read(r io.Reader, fn func(Event) bool) error {
	br := bufio.NewReader(r)
	var ev Event
	var data []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			ev.Data = strings.Join(data, "\n")
			if ev != (Event{}) && !fn(ev) {
				return nil
			}
			ev, data = Event{}, nil
			continue
		}
		if c, ok := strings.CutPrefix(line, ":"); ok {
			if !fn(Event{Comment: strings.TrimPrefix(c, " ")}) {
				return nil
			}
			continue
		}
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimPrefix(v, " ")
		switch k {
		case "id":
			ev.ID = v
		case "event":
			ev.Event = v
		case "data":
			data = append(data, v)
		case "retry":
			ev.Retry = v
		}
	}
}
