// Package httperr is the one place where errors become HTTP answers. Every
// service installs Handler as its Fiber ErrorHandler, so clients always get the
// NestJS error shape the original CryptoPulse published:
//
//	{"statusCode":401,"message":"Invalid or expired token","error":"Unauthorized"}
//
// and never an HTML page or a stack trace.
package httperr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/gofiber/fiber/v2"
	"go.uber.org/zap"
)

// Error is an error a handler wants a client to see. Message is a string, or a
// list of strings for validation failures, as NestJS's ValidationPipe does.
type Error struct {
	Status  int
	Message any
	// Headers are set on the answer (Retry-After on a 429, for example).
	Headers map[string]string
	// Cause is logged but never shown to the client.
	Cause error
}

// Error implements error.
func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%d %v: %v", e.Status, e.Message, e.Cause)
	}
	return fmt.Sprintf("%d %v", e.Status, e.Message)
}

// Unwrap exposes the cause to errors.Is and errors.As.
func (e *Error) Unwrap() error { return e.Cause }

// New returns an Error with a single message.
func New(status int, message string) *Error {
	return &Error{Status: status, Message: message}
}

// Wrap returns an Error whose cause is logged and whose message is shown.
func Wrap(status int, message string, cause error) *Error {
	return &Error{Status: status, Message: message, Cause: cause}
}

// Validation returns a 400 whose message lists every problem found.
func Validation(problems ...string) *Error {
	return &Error{Status: http.StatusBadRequest, Message: problems}
}

// WithHeader returns e with one more header to send.
func (e *Error) WithHeader(key, value string) *Error {
	if e.Headers == nil {
		e.Headers = map[string]string{}
	}
	e.Headers[key] = value
	return e
}

// Body is the JSON body of an error answer.
type Body struct {
	StatusCode int    `json:"statusCode"`
	Message    any    `json:"message"`
	Error      string `json:"error"`
}

// BodyOf returns the body sent for e.
func BodyOf(e *Error) Body {
	return Body{StatusCode: e.Status, Message: e.Message, Error: StatusText(e.Status)}
}

// MsgTooLarge is the message of every 413, whether a service or nginx
// (deploy/nginx/nginx.conf) refuses the body, so a client sees one body.
const MsgTooLarge = "Request body is too large"

// StatusText is the error field's phrase for a status: NestJS's, which
// names 413 by RFC 9110's "Payload Too Large" where Go keeps the older
// "Request Entity Too Large"; otherwise Go's.
func StatusText(status int) string {
	if status == http.StatusRequestEntityTooLarge {
		return "Payload Too Large"
	}
	return http.StatusText(status)
}

// Translate turns a service-specific error into an *Error, or returns nil when
// it does not recognise it. Each service passes its own to Handler.
type Translate func(error) *Error

// Handler returns the Fiber ErrorHandler for a service. Unknown errors become a
// bare 500 and are logged with the request id, so internals never leak.
func Handler(log *zap.Logger, translate Translate) fiber.ErrorHandler {
	return func(c *fiber.Ctx, err error) error {
		e := classify(err, translate, c)
		if e.Status >= 500 {
			log.Error("request failed",
				zap.String("method", c.Method()), zap.String("path", c.Path()),
				zap.Int("status", e.Status), zap.String("requestId", RequestID(c)), zap.Error(err))
		}
		for k, v := range e.Headers {
			c.Set(k, v)
		}
		return c.Status(e.Status).JSON(BodyOf(e))
	}
}

// RequestID returns the request id that the web middleware stored, if any.
func RequestID(c *fiber.Ctx) string {
	if v, ok := c.Locals("requestId").(string); ok {
		return v
	}
	return ""
}

func classify(err error, translate Translate, c *fiber.Ctx) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if translate != nil {
		if t := translate(err); t != nil {
			return t
		}
	}
	var fe *fiber.Error
	if errors.As(err, &fe) {
		switch fe.Code {
		case http.StatusNotFound, http.StatusMethodNotAllowed:
			// NestJS's wording for an unknown route; it answers a known path
			// with the wrong method the same way, and clients expect that.
			return New(http.StatusNotFound, "Cannot "+c.Method()+" "+c.Path())
		case http.StatusRequestEntityTooLarge:
			return New(fe.Code, MsgTooLarge)
		}
		if fe.Code >= 400 && fe.Code < 500 {
			return New(fe.Code, fe.Message)
		}
		return New(fe.Code, StatusText(fe.Code))
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return New(http.StatusGatewayTimeout, "Request timed out")
	}
	return New(http.StatusInternalServerError, "Internal server error")
}

// RetryAfter formats a Retry-After value in whole seconds, rounding up so a
// client that waits exactly that long is never early.
func RetryAfter(ms int64) string {
	s := (ms + 999) / 1000
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}

// DecodeBody reads an error answer strictly: it must be a JSON object with
// statusCode, message and error, as every CryptoPulse error is.
func DecodeBody(raw []byte) (Body, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return Body{}, fmt.Errorf("error body is not a JSON object: %w", err)
	}
	for _, k := range []string{"statusCode", "message", "error"} {
		if _, ok := fields[k]; !ok {
			return Body{}, fmt.Errorf("error body lacks %q", k)
		}
	}
	var b Body
	if err := json.Unmarshal(raw, &b); err != nil {
		return Body{}, fmt.Errorf("error body: %w", err)
	}
	return b, nil
}
