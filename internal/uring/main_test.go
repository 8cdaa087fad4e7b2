package uring_test

import (
	"testing"

	"github.com/sendfile2/sendfile2/internal/testutil"
	"github.com/sendfile2/sendfile2/internal/uring"
)

// loopConfig is the Config of the tests' Loops: thread mode when
// testutil.URingThreadEnv asks for it.
var loopConfig uring.Config

func TestMain(m *testing.M) {
	if name, ok := testutil.URingThread(); ok {
		loopConfig = uring.Config{Thread: true}
		for tr := uring.TaskRunDefer; tr <= uring.TaskRunPlain; tr++ {
			if tr.String() == name {
				loopConfig.TaskRun = tr
			}
		}
	}
	testutil.Main(m)
}
