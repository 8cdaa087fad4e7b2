package errqueue_test

import (
	"encoding/binary"
	"errors"
	"slices"
	"strconv"
	"testing"

	"github.com/sendfile2/sendfile2/internal/errqueue"
)

const word = strconv.IntSize / 8

// cmsg builds one control message in Linux's layout, padded to its space.
func cmsg(level, typ int32, data []byte) []byte {
	hdr := word + 8
	b := make([]byte, errqueue.CmsgSpace(len(data)))
	if word == 8 {
		binary.NativeEndian.PutUint64(b, uint64(hdr+len(data)))
	} else {
		binary.NativeEndian.PutUint32(b, uint32(hdr+len(data)))
	}
	binary.NativeEndian.PutUint32(b[word:], uint32(level))
	binary.NativeEndian.PutUint32(b[word+4:], uint32(typ))
	copy(b[hdr:], data)
	return b
}

// extErr is a struct sock_extended_err followed by an offender address of
// offender bytes (16 for sockaddr_in, 28 for sockaddr_in6).
func extErr(errno uint32, origin, typ, code uint8, info, data uint32, offender int) []byte {
	b := make([]byte, errqueue.SizeofSockExtendedErr+offender)
	binary.NativeEndian.PutUint32(b, errno)
	b[4], b[5], b[6] = origin, typ, code
	binary.NativeEndian.PutUint32(b[8:], info)
	binary.NativeEndian.PutUint32(b[12:], data)
	return b
}

func zc(lo, hi uint32, code uint8) []byte {
	return cmsg(errqueue.SolIP, errqueue.IPRecvErr, extErr(0, errqueue.OriginZeroCopy, 0, code, lo, hi, 16))
}

func zc6(lo, hi uint32, code uint8) []byte {
	return cmsg(errqueue.SolIPv6, errqueue.IPv6RecvErr, extErr(0, errqueue.OriginZeroCopy, 0, code, lo, hi, 28))
}

func TestParse(t *testing.T) {
	icmp := extErr(113, 2, 3, 1, 0, 0, 16) // EHOSTUNREACH from ICMP
	good := zc(7, 9, 0)
	tests := []struct {
		name      string
		oob       []byte
		want      []errqueue.Notification
		others    int
		malformed int
	}{
		{"empty", nil, nil, 0, 0},
		{"ipv4", zc(0, 0, 0), []errqueue.Notification{{Lo: 0, Hi: 0}}, 0, 0},
		{"ipv4 copied", zc(5, 9, errqueue.CodeZeroCopyCopied), []errqueue.Notification{{Lo: 5, Hi: 9, Copied: true}}, 0, 0},
		{"ipv6", zc6(1, 3, 1), []errqueue.Notification{{Lo: 1, Hi: 3, Copied: true}}, 0, 0},
		{"wrapped", zc(0xfffffffe, 1, 0), []errqueue.Notification{{Lo: 0xfffffffe, Hi: 1}}, 0, 0},
		{"other code bits", zc(1, 1, 0x80), []errqueue.Notification{{Lo: 1, Hi: 1}}, 0, 0},
		{"no offender", cmsg(errqueue.SolIP, errqueue.IPRecvErr, extErr(0, errqueue.OriginZeroCopy, 0, 0, 2, 4, 0)),
			[]errqueue.Notification{{Lo: 2, Hi: 4}}, 0, 0},
		{"two", slices.Concat(zc(1, 2, 0), zc6(3, 3, 1)), []errqueue.Notification{{Lo: 1, Hi: 2}, {Lo: 3, Hi: 3, Copied: true}}, 0, 0},
		{"icmp error", cmsg(errqueue.SolIP, errqueue.IPRecvErr, icmp), nil, 1, 0},
		{"icmp then zerocopy", slices.Concat(cmsg(errqueue.SolIP, errqueue.IPRecvErr, icmp), good),
			[]errqueue.Notification{{Lo: 7, Hi: 9}}, 1, 0},
		{"other message", slices.Concat(cmsg(1, 29, make([]byte, 16)), good), []errqueue.Notification{{Lo: 7, Hi: 9}}, 1, 0},
		{"short data", slices.Concat(cmsg(errqueue.SolIP, errqueue.IPRecvErr, make([]byte, 15)), good),
			[]errqueue.Notification{{Lo: 7, Hi: 9}}, 1, 1},
		{"cut header", good[:word+7], nil, 1, 1},
		{"cut data", good[:len(good)-20], nil, 1, 1},
		{"zerocopy then cut", slices.Concat(good, good[:10]), []errqueue.Notification{{Lo: 7, Hi: 9}}, 1, 1},
		{"length below header", func() []byte {
			b := slices.Clone(good)
			b[0] = 3
			return b
		}(), nil, 1, 1},
		{"huge length", func() []byte {
			b := slices.Clone(good)
			for i := range word {
				b[i] = 0xff
			}
			return b
		}(), nil, 1, 1},
		{"unpadded last", zc6(7, 9, 0)[:word+8+errqueue.SizeofSockExtendedErr+28], []errqueue.Notification{{Lo: 7, Hi: 9}}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, others := errqueue.Parse(tt.oob, nil)
			if !slices.Equal(got, tt.want) {
				t.Errorf("notifications = %+v, want %+v", got, tt.want)
			}
			malformed := 0
			for _, o := range others {
				if errors.Is(o.Reason, errqueue.ErrMalformed) {
					malformed++
				}
			}
			if len(others) != tt.others || malformed != tt.malformed {
				t.Errorf("others = %+v: want %d, %d malformed", others, tt.others, tt.malformed)
			}
		})
	}
}

func TestParseOtherOrigin(t *testing.T) {
	_, others := errqueue.Parse(cmsg(errqueue.SolIPv6, errqueue.IPv6RecvErr, extErr(110, 3, 1, 4, 1500, 0, 28)), nil)
	want := errqueue.Other{Level: errqueue.SolIPv6, Type: errqueue.IPv6RecvErr,
		Err: errqueue.ExtendedErr{Errno: 110, Origin: 3, Type: 1, Code: 4, Info: 1500}}
	if len(others) != 1 || others[0] != want {
		t.Fatalf("others = %+v, want %+v", others, want)
	}
}

func TestCalls(t *testing.T) {
	for _, tt := range []struct {
		lo, hi uint32
		want   uint64
	}{
		{0, 0, 1}, {3, 7, 5}, {0xffffffff, 0, 2}, {0xfffffff0, 0x0f, 32}, {1, 0, 1 << 32}, {0, 0xffffffff, 1 << 32},
	} {
		if got := (errqueue.Notification{Lo: tt.lo, Hi: tt.hi}).Calls(); got != tt.want {
			t.Errorf("[%d, %d].Calls() = %d, want %d", tt.lo, tt.hi, got, tt.want)
		}
	}
}

// FuzzParse: Parse never panics, and reads back notifications it is given.
func FuzzParse(f *testing.F) {
	f.Add([]byte{})
	f.Add(zc(1, 2, 1))
	f.Add(slices.Concat(zc(1, 2, 0), zc6(0xffffffff, 3, 1)))
	f.Add(cmsg(errqueue.SolIP, errqueue.IPRecvErr, extErr(113, 2, 3, 1, 0, 0, 16)))
	f.Add(zc(1, 2, 1)[:17])
	f.Fuzz(func(t *testing.T, oob []byte) {
		notes, others := errqueue.Parse(oob, nil)
		if len(notes)*errqueue.CmsgSpace(errqueue.SizeofSockExtendedErr) > len(oob)+word {
			t.Fatalf("%d notifications from %d bytes", len(notes), len(oob))
		}
		for _, o := range others {
			if o.Reason == nil && o.Err.Origin == errqueue.OriginZeroCopy {
				t.Fatalf("zero-copy entry reported as other: %+v", o)
			}
		}
		// Appending a well-formed notification to whatever parsed cleanly
		// yields it last.
		if len(others) == 0 && len(oob)%word == 0 {
			notes2, _ := errqueue.Parse(slices.Concat(oob, zc(41, 42, 1)), nil)
			if len(notes2) != len(notes)+1 || notes2[len(notes)] != (errqueue.Notification{Lo: 41, Hi: 42, Copied: true}) {
				t.Fatalf("appended notification not read back: %+v", notes2)
			}
		}
	})
}
