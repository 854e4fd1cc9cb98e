// Package testkit starts real backing services — redis-server and
// PostgreSQL 15 — on free loopback ports, for integration tests and for
// local development stacks.
//
// Real servers rather than fakes, because the point of an integration test
// is to catch the behaviour a fake gets wrong: protocol details, SQL
// dialect, what happens when the server goes away and comes back.
//
// Every server runs as a child process in its own process group with a
// parent-death signal, so a panicking or killed test binary does not leave
// servers behind. Servers never listen on the services' default ports (6379,
// 5432), so they cannot collide with, or be mistaken for, a system service.
//
// A missing server binary is a hard test failure, never a skip: a skipped
// integration test reports green while testing nothing. Run
// scripts/install-deps.sh to install the binaries.
package testkit
