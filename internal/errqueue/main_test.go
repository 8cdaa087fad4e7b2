package errqueue_test

import (
	"testing"

	"github.com/sendfile2/sendfile2/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }
