package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/sendfile2/sendfile2"
	"github.com/sendfile2/sendfile2/cmd/sendfile2/internal/bench"
)

// choiceFlag is a string flag that takes one of a fixed list of values
// (--log-format, --direction, --source, --receiver, serve's --method). A
// value outside the list fails when the flag is parsed, with the flag's name
// and the list; the list is also what the flag's shell completion offers.
type choiceFlag struct {
	p      *string
	noun   string // what a value is: "method", "log format"
	values []string
}

func choiceVar(fs *pflag.FlagSet, p *string, name, value, noun string, values []string, usage string) {
	*p = value
	fs.Var(&choiceFlag{p: p, noun: noun, values: values}, name, usage)
}

func (f *choiceFlag) Set(s string) error {
	if !slices.Contains(f.values, s) {
		return fmt.Errorf("unknown %s %q: want %s", f.noun, s, orList(f.values))
	}
	*f.p = s
	return nil
}

func (f *choiceFlag) String() string {
	if f == nil || f.p == nil {
		return ""
	}
	return *f.p
}

func (f *choiceFlag) Type() string          { return "string" }
func (f *choiceFlag) completions() []string { return f.values }

// methodsFlag is the list of send methods of check --method and bench
// --methods: the flag may be repeated, and each value may be a
// comma-separated list ("--method copy,uring --method auto"). A name outside
// the list of valid ones, or given twice, fails when the flag is parsed. An
// empty list means the command's default.
type methodsFlag struct {
	p     *[]sendfile2.Method
	valid []sendfile2.Method
}

func methodsVar(fs *pflag.FlagSet, p *[]sendfile2.Method, name string, valid []sendfile2.Method, usage string) {
	fs.Var(&methodsFlag{p: p, valid: valid}, name, usage)
}

func (f *methodsFlag) Set(s string) error {
	for name := range strings.SplitSeq(s, ",") {
		m := sendfile2.Method(strings.TrimSpace(name))
		if !slices.Contains(f.valid, m) {
			return fmt.Errorf("unknown method %q: want %s", m, orList(f.completions()))
		}
		if slices.Contains(*f.p, m) {
			return fmt.Errorf("method %q listed twice", m)
		}
		*f.p = append(*f.p, m)
	}
	return nil
}

func (f *methodsFlag) String() string {
	if f == nil || f.p == nil {
		return ""
	}
	names := make([]string, len(*f.p))
	for i, m := range *f.p {
		names[i] = string(m)
	}
	return strings.Join(names, ",")
}

func (f *methodsFlag) Type() string { return "methods" }

func (f *methodsFlag) completions() []string {
	names := make([]string, len(f.valid))
	for i, m := range f.valid {
		names[i] = string(m)
	}
	return names
}

// methodNames are the names every --method and --methods takes, auto first.
func methodNames() []string {
	names := []string{string(sendfile2.Auto)}
	for _, m := range sendfile2.Methods() {
		names = append(names, string(m))
	}
	return names
}

// checkMethods are the methods check takes; benchMethods those of bench,
// which has a receive entry of its own besides.
func checkMethods() []sendfile2.Method {
	return append([]sendfile2.Method{sendfile2.Auto}, sendfile2.Methods()...)
}
func benchMethods() []sendfile2.Method { return append(checkMethods(), bench.URingDontCache) }

// orList is "a, b or c".
func orList(values []string) string {
	if len(values) < 2 {
		return strings.Join(values, "")
	}
	return strings.Join(values[:len(values)-1], ", ") + " or " + values[len(values)-1]
}
