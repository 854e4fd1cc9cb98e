package config

import (
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Base holds the settings every HTTP service shares.
type Base struct {
	Host       string
	Port       int
	InstanceID string
	LogLevel   string
	RedisURL   string
	// RedisSentinels, when set, are the Sentinels that name the current
	// master of RedisMasterName; REDIS_URL then supplies only the database,
	// password and TLS, not the address.
	RedisSentinels        []string
	RedisMasterName       string
	RedisSentinelPassword string
	ShutdownGrace         time.Duration
	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	ThrottleTTL    time.Duration
}

// LoadBase reads the shared settings. The instance id defaults to the host
// name plus the process id, which is unique per container and per local
// process alike.
func LoadBase(r *Reader, defaultPort int) Base {
	host, _ := os.Hostname()
	b := Base{
		Host:       r.String("HOST", "0.0.0.0"),
		Port:       r.Int("PORT", defaultPort, 0, 65535),
		InstanceID: r.String("INSTANCE_ID", host+"-"+strconv.Itoa(os.Getpid())),
		LogLevel:   r.OneOf("LOG_LEVEL", "info", "debug", "verbose", "info", "log", "warn", "error", "fatal"),
		RedisURL:   r.URL("REDIS_URL", "redis://127.0.0.1:6379/0", "redis", "rediss"),
		// Sentinels, not a master address: the master moves on a failover.
		RedisSentinels:        r.HostPorts("REDIS_SENTINELS"),
		RedisMasterName:       r.String("REDIS_MASTER_NAME", "mymaster"),
		RedisSentinelPassword: r.String("REDIS_SENTINEL_PASSWORD", ""),
		ShutdownGrace:         r.Millis("SHUTDOWN_GRACE_MS", 15*time.Second, 0, 10*time.Minute),
		TrustedProxies:        r.Prefixes("TRUSTED_PROXIES", "127.0.0.1/32,::1/128"),
		ThrottleTTL:           r.Millis("THROTTLE_TTL_MS", time.Minute, time.Second, 24*time.Hour),
	}
	// The id is part of Redis channel names and consumer names.
	if !instanceRe.MatchString(b.InstanceID) {
		r.Fail("INSTANCE_ID", "%q must be 1-64 letters, digits, '.', '_' or '-'", b.InstanceID)
	}
	// Sentinel sends the name back unquoted in space-separated events.
	if !instanceRe.MatchString(b.RedisMasterName) {
		r.Fail("REDIS_MASTER_NAME", "%q must be 1-64 letters, digits, '.', '_' or '-'", b.RedisMasterName)
	}
	return b
}

// RedisTarget describes where the service finds Redis, passwords masked, for
// the startup log.
func (b Base) RedisTarget() string {
	if len(b.RedisSentinels) == 0 {
		return MaskURL(b.RedisURL)
	}
	s := "master " + b.RedisMasterName + " via sentinels " + strings.Join(b.RedisSentinels, ",") +
		" (db, password, TLS from " + MaskURL(b.RedisURL) + ")"
	if b.RedisSentinelPassword != "" {
		s += ", sentinel password " + Mask(b.RedisSentinelPassword)
	}
	return s
}

var instanceRe = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// Addr is the listen address.
func (b Base) Addr() string { return b.Host + ":" + strconv.Itoa(b.Port) }
