#!/usr/bin/env bash
# bench-http.sh: nginx (sendfile on), a net/http FileServer and `sendfile2
# serve` under wrk, over loopback, on the same files in one run.
#
# Each server serves a temporary directory holding files of 16 KiB, 1 MiB and
# 64 MiB (random bytes, in the page cache), and wrk (2 threads) fetches one
# file again and again over keep-alive connections:
#
#   16 KiB with 64 connections, 1 MiB with 16, 64 MiB with 4, 1 MiB with 1000.
#
# Within a round the servers take turns on each case (nginx, net/http, then
# serve with each --methods value), so that drift on a shared machine hits
# them alike. The table gives requests/s and GB/s (all bytes wrk read,
# headers included, GB = 1e9), the CPU the server used (in cores: CPU seconds
# per second of the run), errors wrk counted, serve's GB/s against nginx's and
# net/http's, and for 1000 connections the peak resident set of the server
# during that run (VmHWM, reset through /proc/PID/clear_refs before it; for
# nginx the sum over its master and workers), with the highest RssAnon and
# RssFile sampled every 0.2 s: RssFile counts a file's cached pages once per
# mapping of them, so it is not memory the server owns. A second table gives
# each serve's requests/s, and the CPU it used per request, against
# net/http's and nginx's at 16 KiB and 1 MiB: the median over the rounds of
# the ratio within each round (the servers ran one after the other), with
# the lowest and highest. On a shared machine the CPU per request moves less
# than the requests/s.
#
# The servers:
#   nginx     Debian's nginx, run in the foreground from its own config in the
#             temporary directory: sendfile on, 2 workers, access_log off,
#             keepalive_requests raised to 1000000 (net/http has no limit).
#   net/http  scripts/httpfileserver: http.FileServer(http.Dir(dir)) on
#             net.Listen, nothing else; bodies go out with sendfile(2).
#   serve-M   `sendfile2 serve --method M`, built from this tree.
#   serve-M@REV  the same, built from the git revision REV of this repository
#             (--baseline REV): a change measured against what it changes, in
#             the same run.
#
# It installs what is missing with apt-get (nginx-light or nginx, wrk, curl),
# never touches /etc/nginx, /var/log/nginx or the system's nginx service,
# sends nothing outside 127.0.0.1, and on exit stops every process it started
# and removes its temporary directory.
#
# Usage:
#   scripts/bench-http.sh [--duration 10s] [--methods auto,copy] [--rounds N] [--baseline REV] [--out FILE.md]
set -euo pipefail

usage() {
	cat <<'EOF'
usage: scripts/bench-http.sh [options]

  --duration D   length of each wrk run, as wrk takes it (10s, 1m); default 10s
  --methods LIST sendfile2 serve --method values, comma-separated; default auto
                 (e.g. auto,copy,uring)
  --rounds N     run every case N times, servers interleaved, and report the
                 median (min-max in brackets); default 1
  --baseline REV also run sendfile2 serve built from the git revision REV (a
                 commit, branch or tag of this repository), with each method
  --out FILE.md  also write the table, with the machine and command, to FILE.md
EOF
}

duration=10s
methods=auto
rounds=1
out=
baseline=
cmdline="scripts/bench-http.sh $*"
while [ $# -gt 0 ]; do
	case $1 in
	--duration | --methods | --rounds | --baseline | --out)
		if [ $# -lt 2 ]; then
			echo "bench-http: $1 needs a value" >&2
			exit 2
		fi
		case $1 in
		--duration) duration=$2 ;;
		--methods) methods=$2 ;;
		--rounds) rounds=$2 ;;
		--baseline) baseline=$2 ;;
		--out) out=$2 ;;
		esac
		shift 2
		;;
	--duration=*) duration=${1#*=} && shift ;;
	--methods=*) methods=${1#*=} && shift ;;
	--rounds=*) rounds=${1#*=} && shift ;;
	--baseline=*) baseline=${1#*=} && shift ;;
	--out=*) out=${1#*=} && shift ;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		echo "bench-http: unknown argument $1" >&2
		usage >&2
		exit 2
		;;
	esac
done
if ! [[ $duration =~ ^[0-9]+[smh]?$ ]]; then
	echo "bench-http: --duration $duration: want a wrk duration such as 10s or 1m" >&2
	exit 2
fi
if ! [[ $rounds =~ ^[1-9][0-9]*$ ]]; then
	echo "bench-http: --rounds $rounds: want a positive integer" >&2
	exit 2
fi
IFS=, read -r -a method_list <<<"$methods"
if [ ${#method_list[@]} -eq 0 ]; then
	echo "bench-http: --methods is empty" >&2
	exit 2
fi
for m in "${method_list[@]}"; do
	if ! [[ $m =~ ^[a-z-]+$ ]]; then
		echo "bench-http: --methods: bad method name '$m'" >&2
		exit 2
	fi
done
if [ -n "$out" ]; then
	out=$(realpath -m -- "$out")
fi

repo=$(cd "$(dirname "$0")/.." && pwd)
baseline_rev=
if [ -n "$baseline" ]; then
	if ! baseline_rev=$(git -C "$repo" rev-parse --verify --quiet "$baseline^{commit}"); then
		echo "bench-http: --baseline $baseline: not a revision of $repo" >&2
		exit 2
	fi
	baseline_rev=${baseline_rev:0:12}
fi
loadavg=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' ',')
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"

# --- what it needs ---------------------------------------------------------

apt_updated=
apt_install() {
	if [ "$(id -u)" -ne 0 ]; then
		echo "bench-http: $* missing, and installing it needs root (apt-get)" >&2
		return 1
	fi
	if [ -z "$apt_updated" ]; then
		apt-get update -qq
		apt_updated=1
	fi
	# Where no policy-rc.d forbids it, Debian's postinst starts the system
	# nginx (port 80): that one is left as it is, ours is a separate process.
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
command -v go >/dev/null || {
	echo "bench-http: go not found (looked in PATH and /usr/local/go/bin)" >&2
	exit 1
}
command -v curl >/dev/null || apt_install curl
command -v wrk >/dev/null || apt_install wrk
if ! command -v nginx >/dev/null; then
	# nginx-light is gone from newer Debian releases: then nginx.
	apt_install nginx-light 2>/dev/null || apt_install nginx
fi

# wrk needs a descriptor per connection, and the servers inherit the limit.
want_fds=8192
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want_fds" ]; then
	ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 2100 ]; then
	echo "bench-http: open file limit $(ulimit -n) is too low for 1000 connections" >&2
	exit 1
fi

# --- temporary directory and cleanup -----------------------------------------

tmp=$(mktemp -d /tmp/bench-http.XXXXXX)
# nginx's workers run as an unprivileged user: they must reach the files.
chmod 0755 "$tmp"
pids=()   # every process started in the background, to stop on exit
wrk_pid=

# children prints the child processes of pid (nginx's workers).
children() {
	cat "/proc/$1/task/"*/children 2>/dev/null || true
}

cleanup() {
	local pid kids=() i
	trap - EXIT INT TERM
	if [ -n "$wrk_pid" ]; then
		kill -TERM "$wrk_pid" 2>/dev/null || true
	fi
	for pid in "${pids[@]}"; do
		# shellcheck disable=SC2207 # pids: one word each
		kids+=($(children "$pid"))
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}" "${kids[@]}"; do
		for ((i = 0; i < 50; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	pids=()
	rm -rf -- "$tmp"
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

# --- files -------------------------------------------------------------------

www=$tmp/www
mkdir -m 0755 "$www"
declare -A size_bytes=([16KiB]=16384 [1MiB]=1048576 [64MiB]=67108864)
for name in 16KiB 1MiB 64MiB; do
	head -c "${size_bytes[$name]}" /dev/urandom >"$www/$name.bin"
	chmod 0644 "$www/$name.bin"
	cat "$www/$name.bin" >/dev/null # into the page cache
done
# The cases: file and connections.
cases=("16KiB 64" "1MiB 16" "64MiB 4" "1MiB 1000")

# --- servers -----------------------------------------------------------------

echo "building sendfile2 and httpfileserver" >&2
(cd "$repo" && go build -o "$tmp/sendfile2" ./cmd/sendfile2 && go build -o "$tmp/httpfileserver" ./scripts/httpfileserver)
if [ -n "$baseline_rev" ]; then
	echo "building sendfile2 at $baseline_rev" >&2
	mkdir "$tmp/baseline"
	git -C "$repo" archive "$baseline_rev" | tar -x -C "$tmp/baseline"
	(cd "$tmp/baseline" && go build -o "$tmp/sendfile2-baseline" ./cmd/sendfile2)
fi

used_ports=" "
# free_port prints a TCP port on 127.0.0.1 that nothing listens on.
free_port() {
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + RANDOM % 40000))
		case $used_ports in *" $p "*) continue ;; esac
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			used_ports+="$p "
			echo "$p"
			return 0
		fi
	done
	echo "bench-http: no free port found" >&2
	return 1
}

servers=()          # names, in the order they run
declare -A port pid # by server name

# start NAME CMD...: starts a server in the background, logging to the temp dir.
start() {
	local name=$1
	shift
	"$@" >"$tmp/${name//\//_}.log" 2>&1 &
	pid[$name]=$!
	pids+=("$!")
	servers+=("$name")
}

# wait_ready NAME: waits until the server answers with each file whole, for at
# most 10 s.
wait_ready() {
	local name=$1 url="http://127.0.0.1:${port[$1]}" i got f
	for ((i = 0; i < 100; i++)); do
		if ! kill -0 "${pid[$name]}" 2>/dev/null; then
			echo "bench-http: $name exited; its log:" >&2
			cat "$tmp/${name//\//_}.log" >&2
			return 1
		fi
		if curl -fsS -o /dev/null --max-time 2 "$url/16KiB.bin" 2>/dev/null; then
			for f in 16KiB 1MiB 64MiB; do
				got=$(curl -fsS -o /dev/null --max-time 30 -w '%{size_download}' "$url/$f.bin")
				if [ "$got" != "${size_bytes[$f]}" ]; then
					echo "bench-http: $name sent $got bytes of $f.bin, want ${size_bytes[$f]}" >&2
					return 1
				fi
			done
			return 0
		fi
		sleep 0.1
	done
	echo "bench-http: $name did not answer on $url within 10 s; its log:" >&2
	cat "$tmp/${name//\//_}.log" >&2
	return 1
}

# nginx
mkdir -m 0755 "$tmp/nginx"
port[nginx]=$(free_port)
cat >"$tmp/nginx/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 2;
worker_rlimit_nofile 8192;
pid $tmp/nginx/nginx.pid;
lock_file $tmp/nginx/nginx.lock;
error_log $tmp/nginx/error.log warn;
events {
	worker_connections 4096;
}
http {
	access_log off;
	sendfile on;
	keepalive_requests 1000000;
	default_type application/octet-stream;
	client_body_temp_path $tmp/nginx/body;
	proxy_temp_path $tmp/nginx/proxy;
	fastcgi_temp_path $tmp/nginx/fastcgi;
	uwsgi_temp_path $tmp/nginx/uwsgi;
	scgi_temp_path $tmp/nginx/scgi;
	server {
		listen 127.0.0.1:${port[nginx]};
		root $www;
	}
}
EOF
# -e: the error log before the config is read (else /var/log/nginx).
start nginx nginx -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx/nginx.conf"

port[net/http]=$(free_port)
start net/http "$tmp/httpfileserver" -addr "127.0.0.1:${port[net/http]}" "$www"

for m in "${method_list[@]}"; do
	port[serve-$m]=$(free_port)
	start "serve-$m" "$tmp/sendfile2" serve --addr "127.0.0.1:${port[serve-$m]}" --method "$m" "$www"
	if [ -n "$baseline_rev" ]; then
		b=serve-$m@$baseline_rev
		port[$b]=$(free_port)
		start "$b" "$tmp/sendfile2-baseline" serve --addr "127.0.0.1:${port[$b]}" --method "$m" "$www"
	fi
done

for s in "${servers[@]}"; do
	wait_ready "$s"
done

# --- measuring ---------------------------------------------------------------

# procs NAME: the server's processes: nginx's master and its workers.
procs() {
	echo "${pid[$1]}"
	children "${pid[$1]}"
}

# cpu_ticks NAME: user+system clock ticks of the server's processes so far.
cpu_ticks() {
	local p total=0 stat rest
	for p in $(procs "$1"); do
		stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		rest=${stat##*) }
		# After the command name: state is field 3, utime 14, stime 15.
		total=$((total + $(awk '{print $12 + $13}' <<<"$rest")))
	done
	echo "$total"
}

# reset_hwm NAME: resets the peak resident set of the server's processes.
reset_hwm() {
	local p
	for p in $(procs "$1"); do
		echo 5 >"/proc/$p/clear_refs" 2>/dev/null || true
	done
}

# hwm_kib NAME: the sum of the server's processes' peak resident sets, in KiB.
hwm_kib() {
	local p total=0 kb
	for p in $(procs "$1"); do
		kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null) || continue
		total=$((total + ${kb:-0}))
	done
	echo "$total"
}

# rss_kib NAME: the sums of the server's processes' anonymous and file-backed
# resident sets now, in KiB. A file mapped by many sends at once counts once
# per mapping: RssFile can exceed the file's size.
rss_kib() {
	local p
	for p in $(procs "$1"); do
		cat "/proc/$p/status" 2>/dev/null || true
	done | awk '/^RssAnon:/ { a += $2 } /^RssFile:/ { f += $2 } END { print a + 0, f + 0 }'
}

# seconds D: a wrk duration in seconds.
seconds() {
	case $1 in
	*h) echo $((${1%h} * 3600)) ;;
	*m) echo $((${1%m} * 60)) ;;
	*s) echo "${1%s}" ;;
	*) echo "$1" ;;
	esac
}

cat >"$tmp/done.lua" <<'EOF'
-- Prints the totals exactly, where wrk's own summary rounds them.
done = function(summary, latency, requests)
	local e = summary.errors
	io.write(string.format("RESULT %d %d %d %d %d %d %d %d %d\n", summary.duration,
		summary.requests, summary.bytes, e.connect + e.read + e.write + e.status + e.timeout,
		e.connect, e.read, e.write, e.status, e.timeout))
end
EOF

clk_tck=$(getconf CLK_TCK)
samples=$(($(seconds "$duration") * 5 + 300))
mkdir "$tmp/results"
total_runs=$((rounds * ${#cases[@]} * ${#servers[@]}))
run=0
for ((round = 1; round <= rounds; round++)); do
	for c in "${cases[@]}"; do
		read -r file conns <<<"$c"
		for s in "${servers[@]}"; do
			run=$((run + 1))
			printf 'run %d/%d: round %d, %s with %d connections, %s\n' \
				"$run" "$total_runs" "$round" "$file" "$conns" "$s" >&2
			if [ "$conns" -ge 1000 ]; then
				reset_hwm "$s"
			fi
			ticks0=$(cpu_ticks "$s")
			wrk -t2 -c "$conns" -d "$duration" -s "$tmp/done.lua" \
				"http://127.0.0.1:${port[$s]}/$file.bin" >"$tmp/wrk.out" 2>&1 &
			wrk_pid=$!
			# Sample the resident set while wrk runs (at most until a
			# bound past its duration; then wait for wrk alone).
			anon_max=0 file_max=0
			for ((i = 0; i < samples; i++)); do
				kill -0 "$wrk_pid" 2>/dev/null || break
				if [ "$conns" -ge 1000 ]; then
					read -r anon file_rss < <(rss_kib "$s")
					anon_max=$((anon > anon_max ? anon : anon_max))
					file_max=$((file_rss > file_max ? file_rss : file_max))
				fi
				sleep 0.2
			done
			if ! wait "$wrk_pid"; then
				wrk_pid=
				echo "bench-http: wrk failed against $s:" >&2
				cat "$tmp/wrk.out" >&2
				exit 1
			fi
			wrk_pid=
			ticks1=$(cpu_ticks "$s")
			hwm=-
			if [ "$conns" -ge 1000 ]; then
				hwm=$(hwm_kib "$s")
			fi
			result=$(grep '^RESULT ' "$tmp/wrk.out" || true)
			if [ -z "$result" ]; then
				echo "bench-http: no result from wrk against $s:" >&2
				cat "$tmp/wrk.out" >&2
				exit 1
			fi
			read -r r_dur r_req r_bytes r_err r_errs <<<"${result#RESULT }"
			# duration_us requests bytes errors cpu_ticks hwm_kib
			# anon_max_kib file_max_kib connect read write status timeout
			echo "$r_dur $r_req $r_bytes $r_err $((ticks1 - ticks0)) $hwm $anon_max $file_max $r_errs" \
				>>"$tmp/results/$file-$conns-${s//\//_}"
		done
	done
done

# --- the table ---------------------------------------------------------------

# summarize FILE EXPR: median of an awk expression over the rounds, and
# min-max when there are several.
summarize() {
	awk -v OFMT=%.10g "{ print $2 }" "$1" | sort -g | awk '
		{ v[NR] = $1 }
		END {
			med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			printf "%s", med
			if (NR > 1) printf " %s %s", v[1], v[NR]
		}'
}

# fmt VALUE [MIN MAX] with a printf format: "1.23 (1.10-1.40)".
fmt() {
	local f=$1 v=$2
	if [ $# -ge 4 ]; then
		# shellcheck disable=SC2059 # the format is ours
		printf "$f ($f-$f)" "$v" "$3" "$4"
	else
		# shellcheck disable=SC2059
		printf "$f" "$v"
	fi
}

median() { summarize "$1" "$2" | awk '{print $1}'; }

# Awk expressions over a result line (see above).
# shellcheck disable=SC2016 # awk's fields, not the shell's
gbs_expr='$3 / $1 / 1000' rps_expr='$2 / ($1 / 1e6)' cpu_expr="\$5 / $clk_tck / (\$1 / 1e6)"

table=$tmp/table.md
{
	echo "| file | conns | server | requests/s | GB/s | server CPU (cores) | errors | GB/s vs nginx | GB/s vs net/http | peak RSS MiB (sampled peak RssAnon, RssFile) |"
	echo "|---|---|---|---|---|---|---|---|---|---|"
	for c in "${cases[@]}"; do
		read -r file conns <<<"$c"
		key=$file-$conns
		nginx_gbs=$(median "$tmp/results/$key-nginx" "$gbs_expr")
		nethttp_gbs=$(median "$tmp/results/$key-net_http" "$gbs_expr")
		for s in "${servers[@]}"; do
			r=$tmp/results/$key-${s//\//_}
			# shellcheck disable=SC2046 # summarize prints one to three numbers
			rps=$(fmt '%.0f' $(summarize "$r" "$rps_expr"))
			# shellcheck disable=SC2046
			gbs=$(fmt '%.2f' $(summarize "$r" "$gbs_expr"))
			# shellcheck disable=SC2046
			cpu=$(fmt '%.2f' $(summarize "$r" "$cpu_expr"))
			errs=$(awk '{ n += $4; for (i = 9; i <= 13; i++) e[i] += $i }
				END {
					printf "%d", n
					if (n > 0) {
						split("connect read write status timeout", name)
						sep = " ("
						for (i = 9; i <= 13; i++) if (e[i] > 0) { printf "%s%s %d", sep, name[i - 8], e[i]; sep = ", " }
						printf ")"
					}
				}' "$r")
			vs_nginx=- vs_nethttp=- rss=-
			case $s in
			serve-*)
				g=$(median "$r" "$gbs_expr")
				vs_nginx=$(awk -v a="$g" -v b="$nginx_gbs" 'BEGIN { printf "%.2fx", a / b }')
				vs_nethttp=$(awk -v a="$g" -v b="$nethttp_gbs" 'BEGIN { printf "%.2fx", a / b }')
				;;
			esac
			if [ "$conns" -ge 1000 ]; then
				rss=$(awk '{ if ($6 > m) m = $6; if ($7 > a) a = $7; if ($8 > f) f = $8 }
					END { printf "%.0f (anon %.0f, file %.0f)", m / 1024, a / 1024, f / 1024 }' "$r")
			fi
			echo "| $file | $conns | $s | $rps | $gbs | $cpu | $errs | $vs_nginx | $vs_nethttp | $rss |"
		done
	done
	# Requests/s of each serve against net/http's and nginx's, round by
	# round (the servers of a round ran one after the other).
	echo
	echo "| file | conns | server | requests/s vs net/http | requests/s vs nginx | server CPU per request vs net/http | vs nginx |"
	echo "|---|---|---|---|---|---|---|"
	for c in "16KiB 64" "1MiB 16"; do
		read -r file conns <<<"$c"
		key=$file-$conns
		for s in "${servers[@]}"; do
			case $s in serve-*) ;; *) continue ;; esac
			r=$tmp/results/$key-${s//\//_}
			vs=()
			# Fields of a result line (see above), then the other's from 14:
			# requests/s, then CPU ticks per request.
			for expr in '($2 / $1) / ($15 / $14)' '($5 / $2) / ($18 / $15)'; do
				for other in net_http nginx; do
					# shellcheck disable=SC2046 # one to three numbers
					vs+=("$(fmt '%.2fx' $(paste -d' ' "$r" "$tmp/results/$key-$other" |
						awk "{ print $expr }" | sort -g | awk '
							{ v[NR] = $1 }
							END {
								printf "%s", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
								if (NR > 1) printf " %s %s", v[1], v[NR]
							}'))")
				done
			done
			echo "| $file | $conns | $s | ${vs[0]} | ${vs[1]} | ${vs[2]} | ${vs[3]} |"
		done
	done
} >"$table"

nginx_version=$(nginx -v 2>&1 | sed 's/^nginx version: //')
wrk_version=$(wrk -v 2>&1 | awk 'NR == 1 { print $1, $2 }' || true)
mem_gib=$(awk '/^MemTotal:/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
header=$(
	cat <<EOF
Date: $(date -u '+%Y-%m-%d %H:%M UTC'). Machine: Linux $(uname -r), $(nproc) CPUs, ${mem_gib} GiB, $(go version | awk '{print $3}'), ${nginx_version}, ${wrk_version}; load average before the run: $loadavg.
wrk -t2 -c N -d $duration per run, $rounds round(s)$([ "$rounds" -gt 1 ] && echo ", median (min-max); errors summed over the rounds, peak RSS the highest round"). GB/s: all bytes wrk read (headers included), GB = 1e9.

\`\`\`sh
$cmdline
\`\`\`
EOF
)
printf '%s\n\n' "$header"
cat "$table"
if [ -n "$out" ]; then
	printf '%s\n\n' "$header" >"$out"
	cat "$table" >>"$out"
	echo "bench-http: wrote $out" >&2
fi
