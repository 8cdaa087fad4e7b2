package main

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
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
	slots    chan struct{}
	inFlight atomic.Int64
	peak     atomic.Int64 // the most comparisons at once, for the tests
}

// htpasswd is the content of an htpasswd file.
type htpasswd struct {
	hashes map[string][]byte // by user name
	// dummies are hashes of a random password, one per cost the users
	// have; costs has each user's cost, sorted; key is random. A request
	// that names no user is compared with one of them (dummyFor), so that
	// the time taken does not tell which users exist.
	dummies map[int][]byte
	costs   []int
	key     [32]byte

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
	a := &authenticator{file: file, all: all, slots: make(chan struct{}, runtime.GOMAXPROCS(0))}
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
	hashes, _, err := parseHtpasswd(b)
	if err != nil {
		return 0, fmt.Errorf("--htpasswd %s: %w", a.file, err)
	}
	p := &htpasswd{hashes: hashes, dummies: map[int][]byte{}, passed: map[[sha256.Size]byte]bool{}}
	rand.Read(p.key[:])
	for _, h := range hashes {
		c, _ := bcrypt.Cost(h) // parseHtpasswd checked it
		p.costs = append(p.costs, c)
		if p.dummies[c] == nil {
			if p.dummies[c], err = bcrypt.GenerateFromPassword([]byte(rand.Text()), c); err != nil {
				return 0, fmt.Errorf("--htpasswd %s: %w", a.file, err)
			}
		}
	}
	slices.Sort(p.costs)
	a.users.Store(p)
	return len(p.hashes), nil
}

// maxCost is the highest bcrypt cost accepted, htpasswd -C's: each
// failed check costs a comparison at the user's cost, or for an unknown
// name at the cost of a user picked by it (2^17 rounds take about 10 s).
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
		hash = p.dummyFor(user)
	}
	key := sha256.Sum256([]byte(user + "\x00" + pass + "\x00" + string(hash)))
	p.mu.Lock()
	passed := p.passed[key]
	p.mu.Unlock()
	if passed {
		return true
	}
	// At most GOMAXPROCS comparisons at once: wrong credentials, however
	// many, leave CPUs to the rest. Those that wait give up with their
	// request.
	select {
	case a.slots <- struct{}{}:
	case <-r.Context().Done():
		return false
	}
	defer func() { <-a.slots }()
	a.compares.Add(1)
	n := a.inFlight.Add(1)
	for peak := a.peak.Load(); n > peak && !a.peak.CompareAndSwap(peak, n); peak = a.peak.Load() {
	}
	err := bcrypt.CompareHashAndPassword(hash, []byte(pass))
	a.inFlight.Add(-1)
	if err != nil || !known {
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

// dummyFor returns the hash that user, who is not in the file, is compared
// with: one at the cost of a user of the file picked by a keyed hash of the
// name. The same name always gets the same cost, and the names get the
// costs in the proportions the users have them, so that with mixed costs
// the time of a check still does not tell known names from unknown ones.
// (What it tells is a user's cost, known or not; a file whose users share
// one cost gives nothing away.)
func (p *htpasswd) dummyFor(user string) []byte {
	m := hmac.New(sha256.New, p.key[:])
	m.Write([]byte(user))
	i := binary.BigEndian.Uint64(m.Sum(nil)) % uint64(len(p.costs))
	return p.dummies[p.costs[i]]
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
