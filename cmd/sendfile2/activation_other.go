//go:build !linux

package main

import "net"

// isMPTCP reports false: MPTCP listeners are Linux's.
func isMPTCP(*net.TCPListener) (bool, error) { return false, nil }
