package probe_test

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/sendfile2/sendfile2/internal/probe"
)

// Run answers from a cache after the first call; print it as the probe
// command does.
func ExampleRun() {
	f := probe.Run()
	if !f.IOURing {
		fmt.Println("no io_uring:", f.IOURingReason)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	enc.Encode(f)
}
