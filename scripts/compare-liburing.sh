#!/usr/bin/env bash
# compare-liburing.sh: sendfile2's uring and copy engines against liburing,
# 64 KiB sends over loopback, every sender sending to the same receiver
# (liburing's examples/send-zerocopy -R: poll, then recv with MSG_TRUNC), the
# runs interleaved round by round so that drift hits all alike.
#
#   scripts/compare-liburing.sh LIBURING_SOURCE_DIR [ROUNDS]
#
# LIBURING_SOURCE_DIR is a checkout of liburing. It is copied to a scratch
# directory and built there (./configure && make); nothing of it is kept.
#
# The senders, each for 3 s:
#   liburing zc       examples/send-zerocopy -z 1 -b 1: SEND_ZC from one
#                     registered buffer, reused as soon as a send's result
#                     arrives, without waiting for its notification (so it
#                     is not safe: the kernel may still read the buffer).
#   C safe            scripts/compare-liburing/safe-send.c (built against the
#                     same liburing): the same sends held to Send's contract,
#                     a buffer reused only after its notification; "single"
#                     is one Send of 64 KiB at a time, "pipe" the uring
#                     engine's design for one large Send (8 buffers, memcpy in,
#                     linked chains), with buffers of 64 KiB and of 256 KiB
#                     (sendfile2's default); "pipe" once more on a ring set
#                     up without flags, as sendfile2's is; and "pipe" on
#                     such a ring waiting as a Go program must, never in
#                     io_uring_enter: an eventfd, a reaper thread in
#                     epoll_wait, a condition variable (SAFE_SEND_NETPOLL).
#   sendfile2         scripts/compare-liburing/sender: Sender.SendWithHeader
#                     of memory, one Send after another (what `sendfile2 bench
#                     --source memory` does), with the method named.
#   liburing copy     examples/send-zerocopy -z 0 -b 0: IORING_OP_SEND.
#   sendfile2 bench   `sendfile2 bench --source memory --receiver discard`,
#                     with its own receiver (a Go process), for reference.
#
# Prints one line per run (MB/s, MB = 1e6), then the medians and the ratios.
set -euo pipefail
src=${1:?usage: $0 LIBURING_SOURCE_DIR [ROUNDS]}
rounds=${2:-5}
cd "$(dirname "$0")/.."

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r "$src" "$scratch/liburing"
(cd "$scratch/liburing" && ./configure >/dev/null && make -j"$(nproc)" -C src >/dev/null 2>&1 &&
	make -C examples send-zerocopy >/dev/null 2>&1)
L=$scratch/liburing
C=$L/examples/send-zerocopy
cc -O2 -Wall -I"$L/src/include" scripts/compare-liburing/safe-send.c "$L/src/liburing.a" -lpthread -o "$scratch/safe-send"
go build -o "$scratch/sendfile2" ./cmd/sendfile2
go build -o "$scratch/sender" ./scripts/compare-liburing/sender

port=18011
rx() { # liburing's receiver, for one connection
	"$C" tcp -4 -R -t 4 -p "$port" >/dev/null 2>&1 &
	rxpid=$!
	sleep 0.3
}
mbs() { grep -o 'MB/s=[0-9]*' | cut -d= -f2; }
c() { rx; "$C" tcp -4 -D 127.0.0.1 -p "$port" -s 65536 "$@" -t 3 2>&1 | mbs; wait "$rxpid" || true; }
s() { rx; "$scratch/safe-send" "$@" "$port" 3 | mbs; wait "$rxpid" || true; }
sp() { rx; SAFE_SEND_PLAIN_RING=1 "$scratch/safe-send" "$@" "$port" 3 | mbs; wait "$rxpid" || true; }
sn() { rx; SAFE_SEND_NETPOLL=1 "$scratch/safe-send" "$@" "$port" 3 | mbs; wait "$rxpid" || true; }
g() { rx; "$scratch/sender" -port "$port" -t 3 "$@" | mbs; wait "$rxpid" || true; }
g1() { rx; GOMAXPROCS=1 "$scratch/sender" -port "$port" -t 3 "$@" | mbs; wait "$rxpid" || true; }
b() {
	"$scratch/sendfile2" bench --source memory --receiver discard --total 1GiB --file-size 64MiB --rounds 1 --json "$@" |
		python3 -c 'import json,sys; r=json.load(sys.stdin)["results"][0]; print(round(r["gbps_median"]*1000))'
}
runs=(
	"liburing zc, 1 in flight, no notification wait|c -n 1 -z 1 -b 1"
	"C safe single: Send of 64KiB|s single 65536"
	"sendfile2 uring: Send of 64KiB|g -method uring -size 64KiB -buffer-size 64KiB"
	"sendfile2 uring: Send of 64KiB, GOMAXPROCS=1|g1 -method uring -size 64KiB -buffer-size 64KiB"
	"C safe pipe: 8 buffers of 64KiB, memcpy in|s pipe 65536 8"
	"C safe pipe, ring without COOP_TASKRUN and SINGLE_ISSUER|sp pipe 65536 8"
	"C safe pipe, waiting as Go does (eventfd, epoll thread)|sn pipe 65536 8"
	"sendfile2 uring: Send of 64MiB, 64KiB buffers|g -method uring -size 64MiB -buffer-size 64KiB"
	"C safe pipe: 8 buffers of 256KiB, memcpy in|s pipe 262144 8"
	"sendfile2 uring: Send of 64MiB, 256KiB buffers (the default)|g -method uring -size 64MiB -buffer-size 256KiB"
	"liburing copy (IORING_OP_SEND), 1 in flight|c -n 1 -z 0 -b 0"
	"sendfile2 copy: Send of 64KiB|g -method copy -size 64KiB"
	"sendfile2 bench uring, its own receiver|b --methods uring --send-size 64KiB --buffer-size 64KiB"
	"sendfile2 bench copy, its own receiver|b --methods copy --send-size 64KiB"
)
out=$scratch/results
for ((r = 1; r <= rounds; r++)); do
	for run in "${runs[@]}"; do
		name=${run%%|*}
		res=$(${run#*|})
		echo "round $r: $name: $res"
		echo "$name|$res" >>"$out"
	done
done
median() { grep -F "$1|" "$out" | cut -d'|' -f2 | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo
echo "medians (MB/s):"
for run in "${runs[@]}"; do
	printf "  %-60s %s\n" "${run%%|*}" "$(median "${run%%|*}")"
done
ratio() { awk -v a="$(median "$2")" -v b="$(median "$3")" -v n="$1" 'BEGIN {printf "  %-60s %.2fx\n", n, a/b}'; }
echo
echo "ratios of the medians:"
ratio "uring Send 64KiB / liburing zc" "sendfile2 uring: Send of 64KiB" "liburing zc, 1 in flight, no notification wait"
ratio "C safe single / liburing zc" "C safe single: Send of 64KiB" "liburing zc, 1 in flight, no notification wait"
ratio "uring 64 KiB Send / C safe single" "sendfile2 uring: Send of 64KiB" "C safe single: Send of 64KiB"
ratio "uring Send 64KiB, GOMAXPROCS=1 / C safe single" "sendfile2 uring: Send of 64KiB, GOMAXPROCS=1" "C safe single: Send of 64KiB"
ratio "uring large Send / C safe pipeline" "sendfile2 uring: Send of 64MiB, 64KiB buffers" "C safe pipe: 8 buffers of 64KiB, memcpy in"
ratio "uring large Send / C safe pipeline, both 256KiB buffers" "sendfile2 uring: Send of 64MiB, 256KiB buffers (the default)" "C safe pipe: 8 buffers of 256KiB, memcpy in"
ratio "uring large Send, 256KiB buffers / C safe pipeline, 64KiB" "sendfile2 uring: Send of 64MiB, 256KiB buffers (the default)" "C safe pipe: 8 buffers of 64KiB, memcpy in"
ratio "C safe pipe, plain ring / C safe pipe" "C safe pipe, ring without COOP_TASKRUN and SINGLE_ISSUER" "C safe pipe: 8 buffers of 64KiB, memcpy in"
ratio "C safe pipe waiting as Go does / C safe pipe" "C safe pipe, waiting as Go does (eventfd, epoll thread)" "C safe pipe: 8 buffers of 64KiB, memcpy in"
ratio "uring large Send / C safe pipe waiting as Go does" "sendfile2 uring: Send of 64MiB, 64KiB buffers" "C safe pipe, waiting as Go does (eventfd, epoll thread)"
ratio "uring Send 64MiB / liburing zc" "sendfile2 uring: Send of 64MiB, 64KiB buffers" "liburing zc, 1 in flight, no notification wait"
ratio "copy Send 64KiB / liburing copy" "sendfile2 copy: Send of 64KiB" "liburing copy (IORING_OP_SEND), 1 in flight"
