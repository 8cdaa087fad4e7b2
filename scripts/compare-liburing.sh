#!/usr/bin/env bash
# compare-liburing.sh: sendfile2's uring and copy engines against liburing's
# examples/send-zerocopy, 64 KiB sends over loopback, the receiver discarding
# (recv with MSG_TRUNC) in both, runs interleaved round by round.
#
#   scripts/compare-liburing.sh LIBURING_SOURCE_DIR [ROUNDS]
#
# LIBURING_SOURCE_DIR is a checkout of liburing. It is copied to a scratch
# directory and built there (./configure && make); nothing of it is kept.
# Prints one line per run: the tool, its settings, MB/s (and for sendfile2 the
# sender's CPU seconds per GiB), then the medians.
set -euo pipefail
src=${1:?usage: $0 LIBURING_SOURCE_DIR [ROUNDS]}
rounds=${2:-5}
cd "$(dirname "$0")/.."

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r "$src" "$scratch/liburing"
(cd "$scratch/liburing" && ./configure >/dev/null && make -j"$(nproc)" -C src >/dev/null 2>&1 &&
	make -C examples send-zerocopy >/dev/null 2>&1)
C=$scratch/liburing/examples/send-zerocopy
go build -o "$scratch/sendfile2" ./cmd/sendfile2

port=18011
c() { # liburing: receiver, then a 3 s sender
	"$C" tcp -4 -R -t 4 -p "$port" >/dev/null 2>&1 &
	local rx=$!
	sleep 0.3
	"$C" tcp -4 -D 127.0.0.1 -p "$port" -s 65536 "$@" -t 3 2>&1 | grep -o 'MB/s=[0-9]*' | cut -d= -f2
	wait "$rx" || true
}
g() { # sendfile2 bench, one round of 1 GiB
	"$scratch/sendfile2" bench --source memory --receiver discard --total 1GiB --rounds 1 --json "$@" |
		python3 -c 'import json,sys; r=json.load(sys.stdin)["results"][0]; print(round(r["gbps_median"]*1000), round(r["cpu_s_per_gib"],3))'
}
runs=(
	"liburing zc, 1 in flight|c -n 1 -z 1 -b 1"
	"sendfile2 uring, Send of 64KiB, 64KiB buffers|g --methods uring --file-size 64MiB --send-size 64KiB --buffer-size 64KiB"
	"liburing zc, 8 in flight (reorders TCP)|c -n 8 -z 1 -b 1"
	"sendfile2 uring, Send of 512KiB, 64KiB buffers|g --methods uring --file-size 64MiB --send-size 512KiB --buffer-size 64KiB"
	"sendfile2 uring, Send of 64MiB, 64KiB buffers|g --methods uring --file-size 64MiB --buffer-size 64KiB"
	"liburing copy (IORING_OP_SEND), 1 in flight|c -n 1 -z 0 -b 0"
	"sendfile2 copy, Send of 64KiB|g --methods copy --file-size 64MiB --send-size 64KiB"
	"liburing copy (IORING_OP_SEND), 8 in flight|c -n 8 -z 0 -b 0"
)
out=$scratch/results
for ((r = 1; r <= rounds; r++)); do
	for run in "${runs[@]}"; do
		name=${run%%|*}
		res=$(${run#*|})
		echo "round $r: $name: $res"
		echo "$name|${res%% *}" >>"$out"
	done
done
echo
echo "medians (MB/s):"
for run in "${runs[@]}"; do
	name=${run%%|*}
	grep -F "$name|" "$out" | cut -d'|' -f2 | sort -n |
		awk -v n="$name" '{v[NR]=$1} END {printf "  %-50s %s\n", n, v[int((NR+1)/2)]}'
done
