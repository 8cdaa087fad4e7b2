package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

// countFlag is the flag type of the counts (--rounds, --conns, --max-conns,
// --buffers): a whole number of at least min. Like sizeFlag, it refuses a
// bad value when the flag is parsed, in words and with the flag's name.
type countFlag struct {
	p   *int
	min int
}

func countVar(fs *pflag.FlagSet, p *int, name string, value, min int, usage string) {
	*p = value
	fs.Var(&countFlag{p: p, min: min}, name, usage)
}

func (f *countFlag) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	switch {
	case err != nil:
		return fmt.Errorf("want a whole number of at least %d", f.min)
	case n < f.min:
		return fmt.Errorf("want at least %d", f.min)
	}
	*f.p = n
	return nil
}

func (f *countFlag) String() string {
	if f == nil || f.p == nil {
		return "0"
	}
	return strconv.Itoa(*f.p)
}

func (f *countFlag) Type() string { return "int" }
