package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// runRefused runs the command line args, which should be refused before
// serve starts: exit status 2 and an error that names flag. Should they be
// accepted, serve runs for a few seconds (on the addresses the args give)
// and the test fails, rather than waiting for ever.
func runRefused(t *testing.T, flag string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	if code := run(ctx, args, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), flag) {
		t.Errorf("%q: exit %d, stderr %q; want 2 naming %s", args, code, errOut.String(), flag)
	}
}

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "127.1.2.3:80": true, "[::1]:80": true, "localhost:80": true, "LocalHost:1": true,
		":8080": false, "0.0.0.0:80": false, "[::]:80": false, "192.168.1.1:80": false, "example.com:80": false,
		"": false, "127.0.0.1": false, "[fe80::1%lo]:80": false,
	} {
		if got := loopback(addr); got != want {
			t.Errorf("loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
