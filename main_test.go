package sendfile2_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/sendfile2/sendfile2"
	"github.com/sendfile2/sendfile2/internal/engine"
	"github.com/sendfile2/sendfile2/internal/testutil"
)

func TestMain(m *testing.M) {
	// A parent test may run this binary again with io_uring refused.
	if err := testutil.RefuseIOURingFromEnv(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	_, engine.ThreadByDefault = testutil.URingThread()
	testutil.Main(m, sendfile2.CheckNoLeaks)
}
