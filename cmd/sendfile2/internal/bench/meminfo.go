package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// parseMeminfo returns field of /proc/meminfo's text (a line such as
// "Cached:         2414564 kB"), in bytes.
func parseMeminfo(data []byte, field string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		num, unit, _ := strings.Cut(strings.TrimSpace(rest), " ")
		kb, err := strconv.ParseInt(num, 10, 64)
		if err != nil || kb < 0 || kb > math.MaxInt64>>10 || strings.TrimSpace(unit) != "kB" {
			return 0, fmt.Errorf("meminfo: %s: bad value %q", field, strings.TrimSpace(rest))
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("meminfo: %w", err)
	}
	return 0, fmt.Errorf("meminfo: no %s", field)
}
