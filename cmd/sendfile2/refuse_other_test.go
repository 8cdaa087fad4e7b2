//go:build !linux

package main

import "errors"

// refuseIOURing fails: io_uring is Linux's.
func refuseIOURing() error { return errors.New("io_uring is Linux's") }
