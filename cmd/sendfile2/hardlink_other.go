//go:build !linux

package main

import (
	"errors"
	"os"
)

// lockDir is Linux's: elsewhere the guard has no /proc and never calls it.
func lockDir(*os.File, bool) error {
	return errors.New("lockDir: Linux only")
}
