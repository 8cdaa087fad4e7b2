package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/bcrypt"
)

// authenticator checks HTTP Basic credentials against the users of an
// htpasswd file, for PUT requests, or for every request when all is set.
type authenticator struct {
	file     string
	all      bool
	users    atomic.Pointer[htpasswd]
	compares atomic.Int64 // bcrypt comparisons made, for the tests
}

// htpasswd is the content of an htpasswd file.
type htpasswd struct {
	hashes map[string][]byte // by user name
	// dummy is a hash of a random password at the file's highest cost: a
	// request that names no user is compared with it, so that it costs what
	// a known user's does and the time taken does not tell which users exist.
	dummy []byte

	// passed holds the credentials that have passed a bcrypt comparison
	// (SHA-256 of user, password and hash), so that a client that sends
	// them with every request (a browser, with --auth-all) pays bcrypt once,
	// not per request. Wrong credentials are never kept: each costs a
	// comparison. A new file starts with none.
	mu     sync.Mutex
	passed map[[sha256.Size]byte]bool
}

// maxPassed bounds htpasswd.passed; when it is full, it is emptied.
const maxPassed = 1024

func newAuthenticator(file string, all bool) (*authenticator, error) {
	a := &authenticator{file: file, all: all}
	if _, err := a.reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// reload reads the file again and returns how many users it has; on
// failure the users in use stay.
func (a *authenticator) reload() (int, error) {
	b, err := os.ReadFile(a.file)
	if err != nil {
		return 0, fmt.Errorf("--htpasswd: %w", err)
	}
	hashes, cost, err := parseHtpasswd(b)
	if err != nil {
		return 0, fmt.Errorf("--htpasswd %s: %w", a.file, err)
	}
	p := &htpasswd{hashes: hashes, passed: map[[sha256.Size]byte]bool{}}
	if p.dummy, err = bcrypt.GenerateFromPassword([]byte(rand.Text()), cost); err != nil {
		return 0, fmt.Errorf("--htpasswd %s: %w", a.file, err)
	}
	a.users.Store(p)
	return len(p.hashes), nil
}

// maxCost is the highest bcrypt cost accepted, htpasswd -C's: each
// failed check costs a comparison at the user's cost, or the file's highest
// (2^17 rounds take about 10 s).
const maxCost = 17

// parseHtpasswd parses lines "user:hash" with bcrypt hashes ($2y$, as
// Apache's htpasswd -B writes them, $2a$ or $2b$) and returns the hashes by
// user and the highest cost. Empty lines and lines that start with # are
// skipped. Any other hash (MD5 $apr1$, SHA1 {SHA}, crypt) is refused: those
// are fast to guess.
func parseHtpasswd(b []byte) (map[string][]byte, int, error) {
	hashes := map[string][]byte{}
	cost := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), " \t\r")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		switch {
		case !ok || user == "":
			return nil, 0, fmt.Errorf("line %d: want user:hash", n)
		case hashes[user] != nil:
			return nil, 0, fmt.Errorf("line %d: user %q listed twice", n, user)
		case !strings.HasPrefix(hash, "$2y$") && !strings.HasPrefix(hash, "$2a$") && !strings.HasPrefix(hash, "$2b$"):
			return nil, 0, fmt.Errorf("line %d: user %q: not a bcrypt hash ($2y$, as htpasswd -B writes them)", n, user)
		}
		c, err := bcrypt.Cost([]byte(hash))
		if err != nil {
			return nil, 0, fmt.Errorf("line %d: user %q: %w", n, user, err)
		}
		if c > maxCost {
			return nil, 0, fmt.Errorf("line %d: user %q: bcrypt cost %d, above %d", n, user, c, maxCost)
		}
		cost = max(cost, c)
		hashes[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, 0, err
	}
	if len(hashes) == 0 {
		return nil, 0, errors.New("no users")
	}
	return hashes, cost, nil
}

// check reports whether r carries the credentials of a user. Credentials
// that have not passed before cost one bcrypt comparison, whether the user
// exists or not; bcrypt's comparison of the result is constant-time. Those
// that have passed are found by their SHA-256, which only who knows them
// can give.
func (a *authenticator) check(r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	p := a.users.Load()
	hash, known := p.hashes[user]
	if !known {
		hash = p.dummy
	}
	key := sha256.Sum256([]byte(user + "\x00" + pass + "\x00" + string(hash)))
	p.mu.Lock()
	passed := p.passed[key]
	p.mu.Unlock()
	if passed {
		return true
	}
	a.compares.Add(1)
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil || !known {
		return false
	}
	p.mu.Lock()
	if len(p.passed) >= maxPassed {
		clear(p.passed)
	}
	p.passed[key] = true
	p.mu.Unlock()
	return true
}

// scope says which requests need credentials.
func (a *authenticator) scope() string {
	if a.all {
		return "all requests"
	}
	return "PUT"
}

// wrap requires credentials for PUT (every request with all) before h,
// and names the user in the access log.
func (a *authenticator) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.all && r.Method != http.MethodPut {
			h.ServeHTTP(w, r)
			return
		}
		if a.check(r) {
			if rec, ok := w.(*recorder); ok {
				rec.user, _, _ = r.BasicAuth() // for the access log
			}
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="sendfile2"`)
		if r.ContentLength != 0 {
			w.Header().Set("Connection", "close") // the body stays unread
		}
		http.Error(w, http.StatusText(http.StatusUnauthorized), http.StatusUnauthorized)
	})
}
