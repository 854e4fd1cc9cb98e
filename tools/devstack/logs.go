package devstack

import (
	"bytes"
	"io"
	"strings"
	"sync"
)

// tailLines is how many of a process's last lines are kept for error
// messages: enough to show a startup failure, short enough to read.
const tailLines = 40

// maxLine caps one buffered line, so a child writing megabytes without a
// newline cannot grow our memory without bound.
const maxLine = 64 << 10

// sink serialises whole lines from every child onto one writer (the
// terminal in make run, the test log in tests), so lines from different
// instances never mix mid-line.
type sink struct {
	mu sync.Mutex
	w  io.Writer // nil: discard
}

func (s *sink) writeLine(line []byte) {
	if s == nil || s.w == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _ = s.w.Write(line)
}

// lineWriter receives one run's stdout and stderr, prefixes each line with
// "[name] " for the shared sink, copies the raw output to the instance's log
// file, and remembers the last lines.
type lineWriter struct {
	prefix string
	sink   *sink
	file   io.WriteCloser

	mu   sync.Mutex
	buf  []byte
	tail []string
}

func newLineWriter(name string, s *sink, file io.WriteCloser) *lineWriter {
	return &lineWriter{prefix: "[" + name + "] ", sink: s, file: file}
}

// Write implements io.Writer. It never fails: losing a log line must not
// kill the child through a broken pipe.
func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.file != nil {
		_, _ = w.file.Write(p)
	}
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) > maxLine {
				w.emit(w.buf)
				w.buf = w.buf[:0]
			}
			return len(p), nil
		}
		w.emit(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
}

// emit sends one line (without its newline) on; the caller holds mu.
func (w *lineWriter) emit(line []byte) {
	out := make([]byte, 0, len(w.prefix)+len(line)+1)
	out = append(out, w.prefix...)
	out = append(out, line...)
	out = append(out, '\n')
	w.sink.writeLine(out)
	if len(w.tail) == tailLines {
		w.tail = w.tail[1:]
	}
	w.tail = append(w.tail, string(line))
}

// Close flushes a last unterminated line and closes the log file.
func (w *lineWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = nil
	}
	if w.file == nil {
		return nil
	}
	err := w.file.Close()
	w.file = nil
	return err
}

// Tail returns the last lines written, newline-separated.
func (w *lineWriter) Tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.tail, "\n")
}
