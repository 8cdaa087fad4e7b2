package sendfile2_test

import (
	"context"
	"testing"

	"github.com/sendfile2/sendfile2"
	"github.com/sendfile2/sendfile2/internal/check"
)

// TestSafety is the proof: with the receiver held back, each safe method
// delivers the bytes the file held when the send was called, however the file
// is overwritten or truncated after Send returns; sendfile and splice deliver
// the new contents. If a baseline ever stops corrupting, this check has lost
// its power to fail and the test says so.
func TestSafety(t *testing.T) {
	for _, m := range append([]sendfile2.Method{sendfile2.Auto}, sendfile2.Methods()...) {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m})
			out := check.Run(context.Background(), s.Send, check.Options{Dir: t.TempDir()})
			if out.Err != nil {
				t.Fatal(out.Err)
			}
			for _, sc := range check.Scenarios() {
				o := out.PerScenario[sc]
				t.Logf("%s: %d of %d bytes corrupted", sc, o.CorruptedBytes, o.BytesChecked)
				if o.BytesChecked < 1<<20 {
					t.Errorf("%s: only %d bytes checked", sc, o.BytesChecked)
				}
				if m.Safe() && o.CorruptedBytes != 0 {
					t.Errorf("%s: %s corrupted %d bytes", m, sc, o.CorruptedBytes)
				}
				if !m.Safe() && o.CorruptedBytes == 0 {
					t.Errorf("%s: the unsafe baseline corrupted nothing: the check can no longer fail", sc)
				}
			}
		})
	}
}
