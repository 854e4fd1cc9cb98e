package main

import (
	"cryptopulse/libs/config"
	"cryptopulse/libs/jwtauth"
)

// Config is everything the auth service reads from its environment.
type Config struct {
	config.Base
	AdminUser    string
	AdminPass    string
	JWTSecret    string
	JWTExpiresIn string
	LoginLimit   int
}

func loadConfig(getenv config.Getenv) (Config, error) {
	r, err := config.FromEnv(getenv)
	if err != nil {
		return Config{}, err
	}
	c := Config{
		Base:         config.LoadBase(r, 3000),
		AdminUser:    r.Required("ADMIN_USER"),
		AdminPass:    r.Required("ADMIN_PASS"),
		JWTSecret:    r.Secret("JWT_SECRET", jwtauth.MinSecretLen),
		JWTExpiresIn: r.String("JWT_EXPIRES_IN", "1h"),
		LoginLimit:   r.Int("THROTTLE_LOGIN_LIMIT", 5, 1, 1_000_000),
	}
	if _, err := jwtauth.ParseExpiresIn(c.JWTExpiresIn); err != nil {
		r.Fail("JWT_EXPIRES_IN", "%v", err)
	}
	return c, r.Err()
}
