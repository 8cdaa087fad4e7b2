package check_test

import (
	"context"
	"testing"

	"github.com/sendfile2/sendfile2/internal/check"
	"github.com/sendfile2/sendfile2/internal/peer"
)

// startPeer runs a peer on 127.0.0.1 until the test ends and returns its
// address.
func startPeer(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var srv peer.Server
	ls, err := srv.Listen(ctx, "127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ls) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ls.Main.Addr().String()
}

// TestRemote: Run with the receiver in a peer (here on loopback, as a
// second machine would run it): the safe sends corrupt nothing, and
// sendfile(2) corrupts the scenario whose data waits behind the peer's
// small window, so the remote check can fail too.
func TestRemote(t *testing.T) {
	addr := startPeer(t)
	for _, tc := range []struct {
		name string
		send check.SendFunc
		safe bool
	}{
		{"copy", copySend, true},
		{"ack", ackSend, true},
		{"sendfile", sendfileSend, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := check.Run(t.Context(), tc.send, check.Options{Dir: t.TempDir(), Peer: addr})
			if out.Err != nil {
				t.Fatal(out.Err)
			}
			per := int64(check.DefaultRounds * check.DefaultSize)
			for _, s := range check.Scenarios() {
				so := out.PerScenario[s]
				t.Logf("%s: %d of %d bytes corrupted", s, so.CorruptedBytes, so.BytesChecked)
				if so.BytesChecked != per {
					t.Errorf("%s: %d bytes checked, want %d", s, so.BytesChecked, per)
				}
				if tc.safe && so.CorruptedBytes != 0 {
					t.Errorf("%s: %d bytes corrupted", s, so.CorruptedBytes)
				}
			}
			if !tc.safe && out.PerScenario[check.Queued].CorruptedBytes == 0 {
				t.Errorf("sendfile corrupted nothing behind the peer's small window: the remote check can no longer fail")
			}
		})
	}
}
