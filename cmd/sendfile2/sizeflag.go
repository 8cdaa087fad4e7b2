package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/sendfile2/sendfile2/cmd/sendfile2/internal/bytesize"
)

// sizeFlag is the flag type of every byte count of the command: a number of
// bytes or one with a unit (1000, 1e6, 64KiB, 500MB, 2GiB), as
// internal/bytesize reads it, within [min, max] and a multiple of align
// when align is not 0. Fractions of a byte and negative counts are refused
// when the flag is parsed, so a bad value fails with the flag's name (exit
// status 2) before the command runs.
type sizeFlag[T ~int | ~int64] struct {
	p        *T
	min, max int64
	align    int64
}

// sizeVar defines a size flag with default value, and the bounds of
// sizeFlag. The default is shown and listed as it is, even outside the
// bounds: 0 often means "the library's default".
func sizeVar[T ~int | ~int64](fs *pflag.FlagSet, p *T, name string, value T, min, max int64, usage string) *sizeFlag[T] {
	*p = value
	f := &sizeFlag[T]{p: p, min: min, max: max}
	fs.Var(f, name, usage)
	return f
}

func (f *sizeFlag[T]) Set(s string) error {
	n, err := bytesize.Parse(s)
	switch {
	case err != nil:
		return err
	case n < f.min:
		return fmt.Errorf("want at least %s", bytesize.Format(f.min))
	case n > f.max:
		return fmt.Errorf("want at most %s", bytesize.Format(f.max))
	case f.align != 0 && n%f.align != 0:
		return fmt.Errorf("want a multiple of %s", bytesize.Format(f.align))
	}
	*f.p = T(n)
	return nil
}

func (f *sizeFlag[T]) String() string {
	if f == nil || f.p == nil {
		return "0"
	}
	return bytesize.Format(int64(*f.p))
}

func (f *sizeFlag[T]) Type() string { return "size" }
