#!/usr/bin/env bash
# auto-vs-sendfile.sh: sendfile2's auto, copy and sendfile against C's
# sendfile(2) and mmap + send(2), all sending to one and the same receiver,
# a C process that blocks in read(2) (scripts/kernel-facts/baseline.c,
# `baseline recv`), and, for reference, `sendfile2 bench` with its own
# receiver (a Go process that waits in the netpoller). 1 GiB per run from a
# cached 64 MiB file on the disk of this checkout's temporary directory, over
# loopback; the senders interleaved round by round.
#
#   scripts/auto-vs-sendfile.sh [ROUNDS]
#
# Prints one line per run, then per sender the median GB/s, sender CPU s/GiB
# and receiver CPU s/GiB, and the ratios: sendfile2's auto and copy against
# its sendfile and against C's, and C's mmap + send against C's sendfile.
set -euo pipefail
rounds=${1:-3}
cd "$(dirname "$0")/.."

scratch=$(mktemp -d -p "${TMPDIR:-/var/tmp}")
rxpid=
cleanup() {
	[ -n "$rxpid" ] && kill "$rxpid" 2>/dev/null
	rm -rf "$scratch"
}
trap cleanup EXIT
cc -O2 -o "$scratch/baseline" scripts/kernel-facts/baseline.c
go build -o "$scratch/sendfile2" ./cmd/sendfile2
(cd scripts && go build -o "$scratch/sender" ./compare-liburing/sender)
head -c 64M /dev/urandom >"$scratch/file"
cat "$scratch/file" >/dev/null

port=18041
"$scratch/baseline" recv "$port" >"$scratch/recv.log" &
rxpid=$!
sleep 0.3
# receiver_alive: fail, rather than wait for ever, if the receiver is gone
# (the port was taken, or it crashed).
receiver_alive() {
	kill -0 "$rxpid" 2>/dev/null || { echo "auto-vs-sendfile: the receiver on port $port is gone" >&2; exit 1; }
}
receiver_alive
out=$scratch/results
# recv_cpu N: the receiver's CPU seconds per GiB for its Nth connection,
# waiting until it has printed it (it prints after the sender's end), which
# must have brought it exactly 1 GiB.
recv_cpu() {
	while [ "$(wc -l <"$scratch/recv.log")" -lt "$1" ]; do
		receiver_alive
		sleep 0.1
	done
	sed -n "${1}p" "$scratch/recv.log" | awk '{split($2, b, "="); split($3, c, "=")
		if (b[2] != 2^30) { print "auto-vs-sendfile: the receiver got " b[2] " bytes" > "/dev/stderr"; exit 1 }
		printf "%.3f", c[2] / (b[2] / 2^30)}'
}
conns=0
for ((r = 1; r <= rounds; r++)); do
	BASELINE_PORT=$port "$scratch/baseline" 1 "$scratch" >"$scratch/c"
	for name in "sendfile, 1 MiB calls (unsafe)" "splice via pipe, 1 MiB (unsafe)" "pread + write, 1 MiB" "pread + write, 64 KiB" "mmap + send, 1 MiB (unsafe)"; do
		conns=$((conns + 1))
		row=$(grep -F "| $name |" "$scratch/c")
		gbs=$(echo "$row" | awk -F'|' '{split($3, a, " "); print a[1]}')
		cpu=$(echo "$row" | awk -F'|' '{split($4, a, " "); print a[1]}')
		line="C $name|$gbs|$cpu|$(recv_cpu "$conns")"
		echo "round $r: $line"
		echo "$line" >>"$out"
	done
	for m in auto copy sendfile; do
		res=$("$scratch/sender" -method "$m" -file "$scratch/file" -total 1GiB -port "$port")
		conns=$((conns + 1))
		mbs=$(echo "$res" | grep -o 'MB/s=[0-9]*' | cut -d= -f2)
		cpu=$(echo "$res" | grep -o 'cpu_s_per_gib=[0-9.]*' | cut -d= -f2)
		line="sendfile2 $m|$(awk -v m="$mbs" 'BEGIN {printf "%.2f", m / 1000}')|$cpu|$(recv_cpu "$conns")"
		echo "round $r: $line"
		echo "$line" >>"$out"
	done
	"$scratch/sendfile2" bench --methods auto,sendfile --file-size 64MiB --total 1GiB --rounds 1 --dir "$scratch" --json |
		python3 -c '
import json, sys
for r in json.load(sys.stdin)["results"]:
    print("sendfile2 bench %s, its own receiver|%.2f|%.3f|%.3f" % (r["method"], r["gbps_median"], r["cpu_s_per_gib"], r["receiver_cpu_s_per_gib"]))' |
		while IFS= read -r line; do
			echo "round $r: $line"
			echo "$line" >>"$out"
		done
done
python3 - "$out" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, gbs, cpu, rcpu = line.rstrip("\n").split("|")
    rows.setdefault(name, []).append((float(gbs), float(cpu), float(rcpu)))
med = {n: [statistics.median(v[i] for v in vs) for i in range(3)] for n, vs in rows.items()}
print("\nmedians: GB/s, sender CPU s/GiB, receiver CPU s/GiB")
for n, (g, c, rc) in med.items():
    print("  %-52s %5.2f  %6.3f  %6.3f" % (n, g, c, rc))
def ratio(label, a, b):
    print("  %-52s %5.2fx GB/s  %5.2fx sender CPU" % (label, med[a][0] / med[b][0], med[a][1] / med[b][1]))
print("\nratios of the medians (one receiver, C, blocking in read):")
ratio("sendfile2 auto / sendfile2 sendfile", "sendfile2 auto", "sendfile2 sendfile")
ratio("sendfile2 copy / sendfile2 sendfile", "sendfile2 copy", "sendfile2 sendfile")
ratio("sendfile2 auto / C sendfile", "sendfile2 auto", "C sendfile, 1 MiB calls (unsafe)")
ratio("C mmap + send / C sendfile", "C mmap + send, 1 MiB (unsafe)", "C sendfile, 1 MiB calls (unsafe)")
ratio("sendfile2 auto / C mmap + send", "sendfile2 auto", "C mmap + send, 1 MiB (unsafe)")
ratio("sendfile2 sendfile / C sendfile", "sendfile2 sendfile", "C sendfile, 1 MiB calls (unsafe)")
print("\nwith sendfile2 bench's receiver (Go, netpoller):")
ratio("sendfile2 bench auto / sendfile", "sendfile2 bench auto, its own receiver", "sendfile2 bench sendfile, its own receiver")
EOF
