package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// unitSettings reads a systemd unit file: each Key=value line outside
// comments, in order.
func unitSettings(t *testing.T, name string) [][2]string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "packaging", "systemd", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var kv [][2]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is not Key=value", name, line)
		}
		kv = append(kv, [2]string{k, v})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return kv
}

func setting(kv [][2]string, key string) (string, bool) {
	for _, p := range kv {
		if p[0] == key {
			return p[1], true
		}
	}
	return "", false
}

// TestSystemdUnits: the service runs serve with flags that serve takes and
// without --addr (the socket unit gives the socket), leaves io_uring
// allowed (no system call filter) with room for the registered buffers, and
// the socket unit passes one plain listening TCP socket named http.
func TestSystemdUnits(t *testing.T) {
	svc := unitSettings(t, "sendfile2.service")
	exec, ok := setting(svc, "ExecStart")
	if !ok {
		t.Fatal("no ExecStart")
	}
	args := strings.Fields(exec)
	if filepath.Base(args[0]) != "sendfile2" || args[1] != "serve" {
		t.Fatalf("ExecStart=%s does not run sendfile2 serve", exec)
	}
	serve, _, err := rootCommand().Find(args[1:2])
	if err != nil {
		t.Fatal(err)
	}
	if err := serve.ParseFlags(args[2:]); err != nil {
		t.Errorf("ExecStart=%s: %v", exec, err)
	}
	if serve.Flags().Changed("addr") {
		t.Errorf("ExecStart=%s sets --addr, which socket activation refuses", exec)
	}
	if _, ok := setting(svc, "SystemCallFilter"); ok {
		t.Error("the service filters system calls: io_uring must stay allowed")
	}
	for key, want := range map[string]string{"DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
		"LimitMEMLOCK": "64M", "Requires": "sendfile2.socket"} {
		if v, _ := setting(svc, key); v != want {
			t.Errorf("service %s=%q, want %q", key, v, want)
		}
	}
	sock := unitSettings(t, "sendfile2.socket")
	for key, want := range map[string]string{"Accept": "no", "FileDescriptorName": "http", "ListenStream": "8080"} {
		if v, _ := setting(sock, key); v != want {
			t.Errorf("socket %s=%q, want %q", key, v, want)
		}
	}
	if _, ok := setting(sock, "SocketProtocol"); ok {
		t.Error("the socket sets SocketProtocol: zero-copy needs plain TCP")
	}
}

// TestDockerfile: the image's default command is a serve command line that
// serve takes, listening on every address of the container.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var cmdLine []string
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "CMD "); ok {
			if err := json.Unmarshal([]byte(rest), &cmdLine); err != nil {
				t.Fatalf("CMD %s: %v", rest, err)
			}
		}
	}
	if len(cmdLine) < 2 || cmdLine[0] != "serve" {
		t.Fatalf("CMD %q is not a serve command", cmdLine)
	}
	serve, _, err := rootCommand().Find(cmdLine[:1])
	if err != nil {
		t.Fatal(err)
	}
	if err := serve.ParseFlags(cmdLine[1:]); err != nil {
		t.Errorf("CMD %q: %v", cmdLine, err)
	}
	if addr := serve.Flags().Lookup("addr").Value.String(); addr != ":8080" {
		t.Errorf("CMD listens on %q, want :8080 (every address of the container)", addr)
	}
}
