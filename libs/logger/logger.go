// Package logger builds the structured JSON logger every service uses, with
// the service and instance named on every line so interleaved logs of many
// instances can be told apart.
package logger

import (
	"fmt"
	"io"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// New returns a JSON logger writing to w at the given level
// (debug, info, warn, error; the original's "log" and "verbose" are accepted too).
func New(w io.Writer, level, service, instance string) (*zap.Logger, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "time"
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(zapcore.AddSync(w)), lvl)
	return zap.New(core, zap.AddCaller()).With(zap.String("service", service), zap.String("instance", instance)), nil
}

// ParseLevel maps LOG_LEVEL to a zap level.
func ParseLevel(level string) (zapcore.Level, error) {
	switch level {
	case "", "info", "log":
		return zapcore.InfoLevel, nil
	case "debug", "verbose":
		return zapcore.DebugLevel, nil
	case "warn":
		return zapcore.WarnLevel, nil
	case "error", "fatal":
		return zapcore.ErrorLevel, nil
	}
	return 0, fmt.Errorf("LOG_LEVEL: unknown level %q (debug, info, warn, error)", level)
}
