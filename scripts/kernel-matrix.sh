#!/usr/bin/env bash
# kernel-matrix.sh: sendfile2's tests under Linux 5.10, 6.1, 6.12 and 6.18,
# and 6.12 on arm64, each in a qemu virtual machine with a virtio-net device.
#
# For every kernel it fetches Debian's cloud kernel image package
# (linux-image-*-cloud-amd64-unsigned where the suite has one, else the
# signed linux-image-*-cloud-amd64) with apt-get, through a temporary sources
# list, state and cache: the machine's own apt configuration, lists and
# caches stay untouched. The mirror is the one in the machine's apt sources,
# the keyring the machine's Debian archive keyring. Only the vmlinuz is kept,
# in the cache directory, so later runs download nothing.
#
#   5.10   bullseye
#   6.1    bookworm
#   6.12   trixie
#   6.18   trixie-backports, else forky, else sid (the first that has it)
#   6.12-arm64   trixie, linux-image-*-cloud-arm64, booted with
#                qemu-system-aarch64 -M virt; its tests built with GOARCH=arm64
#
# It builds the tests of the packages in PLAN below as static binaries
# (CGO_ENABLED=0 go test -c), the sendfile2 command, and the small init in
# scripts/kernel-matrix/init, packs them into an initramfs (cpio newc, gzip)
# and boots each kernel on it with qemu-system-x86_64 in software emulation
# (TCG), console on the serial port. The init runs the tests with the
# selections below, `sendfile2 probe` and `sendfile2 check` (every method,
# and auto), prints MATRIX result lines and powers off. A VM that has not
# finished within the timeout is killed.
#
# The real network device. Each guest also has a virtio-net device
# (-device virtio-net-pci): Debian builds virtio_net as a module, so the
# modules it needs are taken from the same kernel package and loaded by the
# init (finit_module). On that device the guest kernel holds the pages until
# the peer acknowledges them, which loopback never does. The guest is
# 10.0.2.15/24 and the host 10.0.2.2, where `sendfile2 peer` listens. The
# device's other end is, where the machine allows it (--net), a tap device
# with virtio's offload header: the guest sees scatter-gather, checksum
# offload and TSO, and hands the pages themselves to the device. Else it is
# qemu's user-mode stack (-netdev user), which turns the guest's connections
# to 10.0.2.2:PORT into connections to 127.0.0.1:PORT, and whose device has
# none of these offloads. Across the device the guest runs `sendfile2 check
# --peer` for every method and TestRemoteFaults (reset, stalled peer at a
# deadline, truncation, cancellation, Close with notifications pending)
# against that peer.
#
# Nothing a guest sends can leave the machine: qemu and the peer run inside
# a network namespace made for each VM (unshare --net). It has lo and, with
# the tap network, tap0 (10.0.2.2/24), both created there, and nothing else:
# no other interface, no route, no forwarding to anywhere; with the
# user-mode stack, qemu can reach nothing but that namespace's loopback.
#
# The table gives, per kernel and test package, passed/failed/skipped tests
# (subtests included), the methods that `check` found safe and unsafe (the
# sendfile and splice baselines must come out unsafe) and what auto resolved
# to; a second table gives what `sendfile2 probe` found. The exit status is 1 on any failed test, a test binary that
# exited non-zero, a missing result line, a check that failed, or a VM that
# timed out or panicked.
#
# It installs qemu-system-x86, qemu-system-arm (for arm64 kernels) and cpio
# with apt-get when they are missing, and needs unshare and ip (util-linux,
# iproute2) and root, for the network namespaces.
#
# Usage:
#   scripts/kernel-matrix.sh [--kernels "5.10 6.1 6.12 6.18 6.12-arm64"] [--jobs N]
#                            [--timeout SECONDS] [--cache DIR] [--refresh]
#                            [--keep] [--out FILE.md] [--mirror URI]
#                            [--net tap|user]
set -euo pipefail

usage() {
	cat <<'EOF'
usage: scripts/kernel-matrix.sh [options]

  --kernels LIST   kernels to boot, blank-separated; default
                   "5.10 6.1 6.12 6.18 6.12-arm64"
  --jobs N         VMs at a time; default 2
  --timeout S      seconds a VM may run before it is killed; default 420
  --cache DIR      where the kernels are kept between runs; default
                   $XDG_CACHE_HOME/sendfile2-kernel-matrix (~/.cache/...)
  --refresh        look the kernels up again even when cached
  --keep           keep the work directory (initramfs, console logs)
  --out FILE.md    also write the table, with the date and command, to FILE.md
  --mirror URI     Debian mirror to fetch from; default: the machine's apt sources
  --net tap|user   the guests' network: a tap device in the VM's namespace
                   (default where the machine allows one), or qemu's
                   user-mode stack
EOF
}

kernels="5.10 6.1 6.12 6.18 6.12-arm64"
jobs=2
vm_timeout=420
cache=${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/sendfile2-kernel-matrix
refresh=0
keep=0
out=
mirror=
net=
cmdline="scripts/kernel-matrix.sh $*"
while [ $# -gt 0 ]; do
	case $1 in
	--kernels | --jobs | --timeout | --cache | --out | --mirror | --net)
		if [ $# -lt 2 ]; then
			usage >&2
			exit 2
		fi
		case $1 in
		--kernels) kernels=$2 ;;
		--jobs) jobs=$2 ;;
		--timeout) vm_timeout=$2 ;;
		--cache) cache=$2 ;;
		--out) out=$2 ;;
		--mirror) mirror=$2 ;;
		--net) net=$2 ;;
		esac
		shift 2
		;;
	--refresh) refresh=1; shift ;;
	--keep) keep=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done

cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:${HOME:-/root}/go/bin:$PATH"
export GOTOOLCHAIN=${GOTOOLCHAIN:-auto}

# What runs in every guest, one step a line:
#   test NAME PACKAGE REGEXP TIMEOUT [VAR=VALUE...]
# runs PACKAGE's tests selected by REGEXP (go test -run), with VAR=VALUE in
# their environment; steps that share a NAME add up in one column. Nothing
# here may need a tool outside the initramfs or a network namespace; the
# remote steps reach the peer on the host across the virtio-net device, at
# $PEER (10.0.2.2, the host as qemu's user-mode stack shows it). Software emulation is 10 to 20 times slower than the host: the
# content tests leave out the 64 MiB and larger sizes, which the host runs.
# TIMEOUT bounds the test binary inside the guest.
PLAN=$(
	cat <<'EOF'
test uring ./internal/uring . 120s
test probe ./internal/probe . 120s
test errqueue ./internal/errqueue . 60s
test epoll ./internal/epoll . 60s
test engine ./internal/engine . 120s
test send . ^(TestContent)$/./^size=(0|1|4095|4096|4097|65537|1048579)$ 120s
test send . ^(TestUnixSocket|TestBadInput|TestSendAfterClose|TestCloseWithSendsInFlight|TestTruncatedDuringSend|TestPackageSend|TestBufferReuse|TestSafety|TestSendWithHeader|TestHeaderAlone|TestMsgzcWaitsForNotifications|TestMsgzcForeignNotification|TestDemotion)$ 240s
test send . ^(TestCancel|TestConcurrent)$/^(uring|msgzc)$ 120s
test receive . ^(TestReceiveContent)$/./^size=(0|1|4095|1048579)$ 120s
test receive . ^(TestReceiveBadInput|TestReceiveUnixSocket|TestReceiveCancel)$ 120s
test refused . ^(TestRefusedChild|TestSafety)$/^(auto|msgzc)$ 120s SENDFILE2_TEST_REFUSE_IO_URING=EPERM
test fault . ^(TestFaultPeer|TestFaultFile|TestFaultCancel|TestFaultClose)$/^(auto|uring|uring-mmap|msgzc)$ 240s
test remote . ^(TestRemoteFaults)$ 300s SENDFILE2_TEST_PEER=$PEER
EOF
)
peer_port=7000
PLAN=${PLAN//\$PEER/10.0.2.2:$peer_port}
device_timeout=300s
# What `sendfile2 bench --peer` sends across the device, per method and round.
device_bench="--total 32MiB --file-size 8MiB --rounds 3"
check_timeout=180s

# arch_of KERNEL: the Debian architecture of a kernel of --kernels (6.12,
# 6.12-arm64); series_of KERNEL: its series.
arch_of() { case $1 in *-arm64) echo arm64 ;; *) echo amd64 ;; esac; }
series_of() { echo "${1%-arm64}"; }

# suites_for KERNEL: the suites to look for the kernel in, in order.
suites_for() {
	case $(series_of "$1") in
	5.10) echo bullseye ;;
	6.1) echo bookworm ;;
	6.12) echo trixie ;;
	6.18) echo trixie-backports forky sid ;;
	*) echo "kernel-matrix: unknown kernel $1 (want 5.10, 6.1, 6.12 or 6.18, with -arm64 for arm64)" >&2; return 1 ;;
	esac
}
for k in $kernels; do
	suites_for "$k" >/dev/null || exit 2
done

start=$(date +%s)
phase() { printf '== %s (%ds)\n' "$1" $(($(date +%s) - start)); }

# --- tools -------------------------------------------------------------------

for t in go gzip dpkg-deb apt-get timeout unshare ip; do
	command -v "$t" >/dev/null 2>&1 || { echo "kernel-matrix: $t is missing" >&2; exit 1; }
done
# install_tools installs what is missing of qemu-system-x86_64,
# qemu-system-aarch64 (when an arm64 kernel is asked for) and cpio.
install_tools() {
	local need=()
	command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
	case " $kernels" in
	*-arm64*) command -v qemu-system-aarch64 >/dev/null 2>&1 || need+=(qemu-system-arm) ;;
	esac
	command -v cpio >/dev/null 2>&1 || need+=(cpio)
	[ ${#need[@]} -gt 0 ] || return 0
	echo "   installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

work=$(mktemp -d "${TMPDIR:-/tmp}/kernel-matrix.XXXXXX")
failed=0
cleanup() {
	local pids
	pids=$(jobs -p)
	[ -z "$pids" ] || kill $pids 2>/dev/null || true
	if [ "$keep" = 1 ] || [ "$failed" != 0 ]; then
		echo "work directory kept: $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT

# --- kernels -----------------------------------------------------------------

# The machine's Debian mirror: the first deb source whose URI ends in
# /debian, from deb822 .sources files or one-line sources.list files.
machine_mirror() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' "$f"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) while ($i !~ /\]$/) i++; if ($2 ~ /^\[/) i++; print $i }' "$f"
	done
}
if [ -z "$mirror" ]; then
	mirror=$(machine_mirror | grep -E '/debian/?$' | head -n1 || true)
fi
if [ -z "$mirror" ]; then
	echo "kernel-matrix: no Debian mirror in the machine's apt sources; give one with --mirror" >&2
	exit 1
fi
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$keyring" ] || { echo "kernel-matrix: $keyring is missing (apt-get install debian-archive-keyring)" >&2; exit 1; }

# apt_root SUITE ARCH: a directory with an apt configuration for SUITE and
# ARCH alone (use
# it as APT_CONFIG=DIR/apt.conf), with a sources list, state and cache of its
# own under $work, and the suite's package lists fetched. It keeps the
# machine's apt.conf.d settings (proxies, validity checks) except the files
# that hook commands to apt's runs.
apt_root() {
	local suite=$1 arch=$2 dir=$work/apt/$1-$2 f
	if [ ! -d "$dir" ]; then
		mkdir -p "$dir"/conf.d "$dir"/parts "$dir"/state/lists/partial "$dir"/cache/archives/partial
		: >"$dir"/status
		for f in /etc/apt/apt.conf.d/*; do
			[ -f "$f" ] && ! grep -q 'Invoke' "$f" && cp "$f" "$dir"/conf.d/
		done
		echo "deb [signed-by=$keyring] $mirror $suite main" >"$dir"/sources.list
		cat >"$dir"/apt.conf <<-EOF
			Dir::Etc::parts "$dir/conf.d";
			Dir::Etc::main "/dev/null";
			Dir::Etc::sourcelist "$dir/sources.list";
			Dir::Etc::sourceparts "$dir/parts";
			Dir::Etc::preferences "/dev/null";
			Dir::Etc::preferencesparts "$dir/parts";
			Dir::State "$dir/state";
			Dir::State::status "$dir/status";
			Dir::Cache "$dir/cache";
			APT::Architecture "$arch";
			APT::Architectures { "$arch"; };
			APT::Sandbox::User "root";
			Acquire::Languages "none";
		EOF
		APT_CONFIG=$dir/apt.conf apt-get update -qq >"$dir"/update.log 2>&1 ||
			{ cat "$dir"/update.log >&2; return 1; }
	fi
	echo "$dir"
}

# The modules the virtio-net device needs, in the order they load; those a
# kernel has built in are not in its package and are left out.
device_modules="virtio virtio_ring virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net"

# fetch_kernel KERNEL SUITE...: the newest linux-image-SERIES*-cloud-ARCH
# package of the first SUITE that has one, unpacked; its vmlinuz is kept as
# $cache/KERNEL/vmlinuz, the modules of the network device in
# $cache/KERNEL/modules (with their load order in .../modules/order), and
# its name, version and suite in .../package.
fetch_kernel() {
	local k=$1 series arch suite dir names pkg version deb x m f
	shift
	series=$(series_of "$k")
	arch=$(arch_of "$k")
	local re="^linux-image-${series//./\\.}[.-][^ ]*-cloud-$arch(-unsigned)?\$"
	for suite in "$@"; do
		dir=$(apt_root "$suite" "$arch") || return 1
		names=$(APT_CONFIG=$dir/apt.conf apt-cache search --names-only "$re" 2>/dev/null | awk '{print $1}')
		pkg=$(echo "$names" | sed 's/-unsigned$//' | sort -uV | tail -n1)
		[ -n "$pkg" ] || continue
		if echo "$names" | grep -qxF "$pkg-unsigned"; then
			pkg=$pkg-unsigned
		fi
		x=$work/deb-$k
		mkdir -p "$x"
		(cd "$x" && APT_CONFIG=$dir/apt.conf apt-get download -qq "$pkg:$arch" >/dev/null) || return 1
		deb=$(ls "$x"/*.deb)
		version=$(dpkg-deb -f "$deb" Version)
		dpkg-deb -x "$deb" "$x"/root
		rm -rf "$cache/$k"
		mkdir -p "$cache/$k/modules"
		for m in $device_modules; do
			f=$(find "$x"/root -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -n1)
			[ -n "$f" ] || continue
			cp "$f" "$cache/$k/modules/"
			basename "$f" >>"$cache/$k/modules/order"
		done
		grep -q '^virtio_net\.' "$cache/$k/modules/order" ||
			{ echo "kernel-matrix: no virtio_net module in $pkg" >&2; return 1; }
		cp "$(ls "$x"/root/boot/vmlinuz-* | head -n1)" "$cache/$k/vmlinuz"
		echo "$pkg $version $suite" >"$cache/$k/package"
		rm -rf "$x"
		return 0
	done
	echo "kernel-matrix: no cloud-$arch kernel $series in: $*" >&2
	return 1
}


# Tools and kernels come from the network while the tests build.
phase "tools and kernels, in the background (cache $cache)"
(
	set -e
	install_tools
	for k in $kernels; do
		suites=$(suites_for "$k")
		if [ "$refresh" = 1 ] || [ ! -s "$cache/$k/vmlinuz" ] || [ ! -s "$cache/$k/package" ] || [ ! -s "$cache/$k/modules/order" ]; then
			fetch_kernel "$k" $suites
		fi
		printf '   %-5s %s\n' "$k" "$(cat "$cache/$k/package")"
	done
) >"$work"/fetch.log 2>&1 &
fetch=$!

# --- initramfs ---------------------------------------------------------------

# The guest's network: a tap device with virtio's offload header (the guest
# sees a device with scatter-gather, checksum offload and TSO, as real NICs
# have: its kernel hands the pages themselves to the device) where the
# machine allows tap devices in a namespace; else qemu's user-mode stack,
# whose device has none of these (the guest kernel then segments and copies
# in software, and only the pinning until the peer's acknowledgement is the
# device's).
if [ -z "$net" ]; then
	net=user
	if unshare --net -- ip tuntap add dev probe0 mode tap vnet_hdr >/dev/null 2>&1; then
		net=tap
	fi
fi
case $net in
tap) netdev=(-netdev tap,id=n0,ifname=tap0,script=no,downscript=no,vhost=off) ;;
user) netdev=(-netdev user,id=n0) ;;
*) echo "kernel-matrix: --net $net: want tap or user" >&2; exit 2 ;;
esac
phase "network: $net"
if [ "$net" = user ]; then
	# qemu's user-mode stack acknowledges what the guest sends as soon as
	# it has it, whatever the peer's window: a peer holding back does not
	# hold the guest's data, so the remote fault tests and the baselines'
	# corruption cannot be shown. Only check's safe verdicts count there.
	PLAN=$(echo "$PLAN" | grep -v '^test remote ')
fi

phase "building static test binaries"
# binary PACKAGE: the name go test -c gives PACKAGE's test binary.
binary() { echo "$(basename "$(go list -f '{{.ImportPath}}' "$1")").test"; }
# build_initrd ARCH: the test binaries, sendfile2, the init and the plan for
# ARCH in $work/initrd-ARCH.
build_initrd() {
	local arch=$1 dir=$work/initrd-$1
	mkdir -p "$dir"/bin
	# shellcheck disable=SC2046
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch go test -c -ldflags='-s -w' -o "$dir/bin/" $(echo "$PLAN" | awk '$1 == "test" { print $3 }' | sort -u)
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -ldflags='-s -w' -o "$dir"/bin/sendfile2 ./cmd/sendfile2
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -ldflags='-s -w' -o "$dir"/init ./scripts/kernel-matrix/init
	{
		while read -r _ name pkg rest; do
			echo "test $name /bin/$(binary "$pkg") $rest"
		done < <(echo "$PLAN" | grep '^test ')
		echo "probe /bin/sendfile2"
		echo "check /bin/sendfile2 $check_timeout"
		echo "device /bin/sendfile2 $device_timeout 10.0.2.2:$peer_port"
		echo "bench /bin/sendfile2 $device_timeout 10.0.2.2:$peer_port $device_bench"
	} >"$dir"/plan
}
arches=$(for k in $kernels; do arch_of "$k"; done | sort -u)
for a in $arches; do
	build_initrd "$a"
done
# The peer runs on this machine.
CGO_ENABLED=0 go build -o "$work"/peer ./cmd/sendfile2

phase "waiting for tools and kernels"
if ! wait "$fetch"; then
	cat "$work"/fetch.log >&2
	echo "kernel-matrix: could not install the tools or fetch the kernels" >&2
	exit 1
fi
cat "$work"/fetch.log
for a in $arches; do
	(cd "$work/initrd-$a" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet) | gzip -1 >"$work/initrd-$a.gz"
	printf '   initramfs %s: %s\n' "$a" "$(du -h "$work/initrd-$a.gz" | cut -f1)"
done
# Each kernel's initramfs is its architecture's with the kernel's own
# modules appended (the kernel unpacks concatenated archives in turn).
for k in $kernels; do
	(cd "$cache/$k" && find modules -print0 | cpio --null -o -H newc -R 0:0 --quiet) | gzip -1 >"$work/modules-$k.gz"
	cat "$work/initrd-$(arch_of "$k").gz" "$work/modules-$k.gz" >"$work/initrd-$k.gz"
done

# --- virtual machines --------------------------------------------------------

# The guest CPU is qemu64: under TCG, the wider vector instructions of
# "-cpu max" (which Go's runtime and crypto use when present) are emulated
# more slowly; the same tests ran about 1.5 times faster on qemu64. One vCPU
# per VM, two VMs at a time on two cores. The arm64 guest is a cortex-a72 on
# qemu's virt machine.
vm_memory=2G

# The network namespace each VM runs in (see the header): this script,
# run by unshare --net, brings lo up, and with the tap network also creates
# tap0 (10.0.2.2/24, the only other interface there: qemu's end of the
# guest's device), starts the peer on 10.0.2.2:PORT (tap) or 127.0.0.1:PORT
# (user), waits until it listens, runs the command (qemu) and stops the peer.
cat >"$work"/netns.sh <<'EOF'
#!/usr/bin/env bash
# netns.sh tap|user PEER PORT PEERLOG COMMAND...
set -u
net=$1 peer=$2 port=$3 log=$4
shift 4
ip link set lo up || exit 1
addr=127.0.0.1
if [ "$net" = tap ]; then
	ip tuntap add dev tap0 mode tap vnet_hdr || exit 1
	ip addr add 10.0.2.2/24 dev tap0 || exit 1
	ip link set tap0 up || exit 1
	addr=10.0.2.2
fi
"$peer" peer --listen "$addr:$port" >"$log" 2>&1 &
pid=$!
for _ in $(seq 100); do
	grep -q listening "$log" && break
	sleep 0.1
done
grep -q listening "$log" || { echo "the peer did not start" >>"$log"; kill $pid; exit 1; }
rc=0
"$@" || rc=$?
kill $pid
wait $pid
exit $rc
EOF
chmod +x "$work"/netns.sh


# boot KERNEL: one VM, console log in $work/KERNEL.log, the peer's in
# $work/KERNEL.peer, qemu's exit status in $work/KERNEL.status (124 when the
# timeout killed it).
boot() {
	local k=$1 rc=0 t0 qemu
	t0=$(date +%s)
	case $(arch_of "$k") in
	amd64) qemu=(qemu-system-x86_64 -accel tcg -cpu qemu64 -append "console=ttyS0 panic=-1 loglevel=4") ;;
	arm64) qemu=(qemu-system-aarch64 -M virt -accel tcg -cpu cortex-a72 -append "console=ttyAMA0 panic=-1 loglevel=4") ;;
	esac
	timeout --kill-after=10 "$vm_timeout" unshare --net -- "$work"/netns.sh "$net" "$work"/peer "$peer_port" "$work/$k.peer" \
		"${qemu[@]}" -smp 1 -m "$vm_memory" \
		-nodefaults -display none -no-reboot \
		-serial "file:$work/$k.log" \
		"${netdev[@]}" -device virtio-net-pci,netdev=n0,romfile= \
		-kernel "$cache/$k/vmlinuz" -initrd "$work/initrd-$k.gz" \
		</dev/null >"$work/$k.qemu" 2>&1 || rc=$?
	echo "$rc $(($(date +%s) - t0))" >"$work/$k.status"
}

phase "booting ($jobs at a time, timeout ${vm_timeout}s each)"
running=0
for k in $kernels; do
	if [ "$running" -ge "$jobs" ]; then
		wait -n || true
		running=$((running - 1))
	fi
	boot "$k" &
	running=$((running + 1))
done
wait

# --- results -----------------------------------------------------------------

names=$(echo "$PLAN" | awk '$1 == "test" && !seen[$2]++ { print $2 }')
header="| kernel | package (suite) |"
rule="|---|---|"
for n in $names; do
	header="$header $n |"
	rule="$rule---|"
done
header="$header check: safe | check: unsafe | auto | VM |"
rule="$rule---|---|---|---|"
table="$header"$'\n'"$rule"
problems=()
for k in $kernels; do
	log=$work/$k.log
	read -r rc secs <"$work/$k.status"
	tr -d '\r' <"$log" >"$log.txt" 2>/dev/null || : >"$log.txt"
	release=$(awk '$1 == "MATRIX" && $2 == "kernel" { print $3 }' "$log.txt")
	read -r pkg version suite <"$cache/$k/package"
	row="| ${release:-$k} | $version ($suite) |"
	for n in $names; do
		# The sums of the steps named n: passed, failed, skipped, steps,
		# steps that exited non-zero, and the first such exit status.
		read -r p f s steps bad e < <(awk -v n="$n" '
			$1 == "MATRIX" && $2 == "test" && $3 == n {
				for (i = 4; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
				p += v["pass"]; f += v["fail"]; s += v["skip"]; steps++
				if (v["exit"] != 0) { bad++; if (e == "") e = v["exit"] }
			}
			END { print p + 0, f + 0, s + 0, steps + 0, bad + 0, (e == "" ? 0 : e) }' "$log.txt")
		want=$(echo "$PLAN" | awk -v n="$n" '$1 == "test" && $2 == n' | wc -l)
		if [ "$steps" != "$want" ]; then
			row="$row missing |"
			problems+=("$k: $n: $steps of $want result lines")
			continue
		fi
		cell="$p/$f/$s"
		[ "$bad" = 0 ] || cell="$cell exit $e"
		row="$row $cell |"
		if [ "$f" != 0 ] || [ "$bad" != 0 ]; then
			problems+=("$k: $n: $f failed, $bad test binaries exited non-zero")
		fi
	done
	safe=$(awk '$1 == "MATRIX" && $2 == "check" && $3 != "auto" && $4 == "verdict=safe" { printf "%s%s", sep, $3; sep = " " }' "$log.txt")
	unsafe=$(awk '$1 == "MATRIX" && $2 == "check" && $3 != "auto" && $4 == "verdict=unsafe" { printf "%s%s", sep, $3; sep = " " }' "$log.txt")
	auto=$(awk '$1 == "MATRIX" && $2 == "check" && $3 == "auto" { sub("resolved=", "", $6); print $6 }' "$log.txt")
	checkexit=$(awk '$1 == "MATRIX" && $2 == "check" && $3 ~ /^exit=/ { sub("exit=", "", $3); print $3 }' "$log.txt")
	if [ -z "$checkexit" ]; then
		problems+=("$k: no result from check")
	elif [ "$checkexit" != 0 ]; then
		problems+=("$k: check exited $checkexit (a method expected to be safe was not)")
	fi
	grep -q '^MATRIX probe exit=0' "$log.txt" || problems+=("$k: probe did not succeed")
	vm="${secs}s"
	if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
		vm="timed out"
		problems+=("$k: VM killed after ${vm_timeout}s")
	elif ! grep -q '^MATRIX done' "$log.txt"; then
		vm="no end"
		problems+=("$k: the init did not finish (qemu exit status $rc)")
	fi
	if grep -q 'Kernel panic' "$log.txt"; then
		vm="panic"
		problems+=("$k: kernel panic")
	fi
	while read -r line; do
		problems+=("$k: ${line#MATRIX }")
	done < <(grep -E '^MATRIX (error|failed) ' "$log.txt" || true)
	row="$row ${safe:--} | ${unsafe:--} | ${auto:--} | $vm |"
	table="$table"$'\n'"$row"
done

# The real device: per kernel and method, what `check --peer` found across
# the virtio-net device and what the kernel reported copied. A baseline that
# did not corrupt, a safe method that did, a check that failed, or auto that
# did not stay zero-copy (it sent with copy, or the kernel reported nothing
# sent from the pages) is a problem.
dtable="| kernel | eth0 sg/csum/tso | method | verdict | corrupted bytes | zero-copy (kernel's report) | sent with |"$'\n'"|---|---|---|---|---|---|---|"
for k in $kernels; do
	lt=$work/$k.log.txt
	release=$(awk '$1 == "MATRIX" && $2 == "kernel" { print $3 }' "$lt")
	nic=$(awk '$1 == "MATRIX" && $2 == "net" { sub("sg=", "", $4); sub("tx_csum=", "", $5); sub("tso=", "", $6); print $4 "/" $5 "/" $6 }' "$lt")
	[ -n "$nic" ] || problems+=("$k: no network device in the guest")
	dexit=$(awk '$1 == "MATRIX" && $2 == "device" && $3 ~ /^exit=/ { sub("exit=", "", $3); print $3 }' "$lt")
	if [ -z "$dexit" ]; then
		problems+=("$k: no result from check across the device")
	elif [ "$dexit" != 0 ]; then
		problems+=("$k: check across the device exited $dexit (a method expected to be safe was not)")
	fi
	while read -r method verdict expected resolved corrupted zc copied sent; do
		frac=-
		if [ $((zc + copied)) -gt 0 ]; then
			frac=$(awk -v z="$zc" -v c="$copied" 'BEGIN { printf "%.0f%%", 100 * z / (z + c) }')
		fi
		name=$method
		[ "$resolved" = - ] || name="$method ($resolved)"
		dtable="$dtable"$'\n'"| ${release:-$k} | ${nic:-?} | $name | $verdict | $corrupted | $frac | ${sent//,/ } |"
		if [ "$expected" = unsafe ] && [ "$verdict" != unsafe ] && [ "$net" = tap ]; then
			problems+=("$k: across the device the baseline $method did not corrupt ($verdict): the check lost its power to fail")
		fi
		if [ "$method" = auto ] && [ "$verdict" = safe ]; then
			case ",$sent," in
			*,copy:*) problems+=("$k: across the device auto sent with copy ($sent)") ;;
			esac
			[ "$zc" -gt 0 ] || problems+=("$k: across the device the kernel reported none of auto's bytes sent from the pages")
		fi
	done < <(awk '$1 == "MATRIX" && $2 == "device" && $3 !~ /^exit=/ {
		for (i = 4; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		print $3, v["verdict"], v["expected"], v["resolved"], v["corrupted"], v["zc"], v["copied"], v["sent"] }' "$lt")
done

# What bench --peer measured across the device: software emulation makes
# the figures say little about speed; the ratios to sendfile of the same run
# are what to read.
btable="| kernel | method | GB/s (median of 3) | x sendfile | sender CPU s/GiB | x sendfile | peer CPU s/GiB | zero-copy |"$'\n'"|---|---|---|---|---|---|---|---|"
for k in $kernels; do
	lt=$work/$k.log.txt
	release=$(awk '$1 == "MATRIX" && $2 == "kernel" { print $3 }' "$lt")
	bexit=$(awk '$1 == "MATRIX" && $2 == "bench" && $3 ~ /^exit=/ { sub("exit=", "", $3); print $3 }' "$lt")
	if [ "$bexit" != 0 ]; then
		problems+=("$k: bench across the device: exit ${bexit:-missing}")
	fi
	while read -r row; do
		btable="$btable"$'\n'"| ${release:-$k} | $row"
	done < <(awk '$1 == "MATRIX" && $2 == "bench" && $3 !~ /^exit=/ {
		for (i = 4; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		n++; m[n] = $3; st[n] = v["status"]; g[n] = v["gbps"]; sc[n] = v["sender_cpu"]; pc[n] = v["peer_cpu"]; zc[n] = v["zc"]; rs[n] = v["resolved"]
		if ($3 == "sendfile") { bg = v["gbps"]; bc = v["sender_cpu"] } }
		END { for (i = 1; i <= n; i++) {
			name = m[i]; if (rs[i] != "-") name = name " (" rs[i] ")"
			if (st[i] != "ok") { printf "%s | %s | | | | | | |\n", name, st[i]; continue }
			z = (zc[i] < 0) ? "-" : sprintf("%.0f%%", 100 * zc[i])
			printf "%s | %.3f | %s | %.2f | %s | %.2f | %s |\n", name, g[i], (bg > 0 ? sprintf("%.2f", g[i] / bg) : "-"), sc[i], (bc > 0 ? sprintf("%.2f", sc[i] / bc) : "-"), pc[i], z } }' "$lt")
done

# The probe's answers, one row per kernel.
probe_keys="io_uring send_zc sendmsg_zc zc_report_usage read_fixed dontcache msg_zerocopy io_uring_disabled"
ptable="| kernel |"
prule="|---|"
for key in $probe_keys; do
	ptable="$ptable $key |"
	prule="$prule---|"
done
ptable="$ptable"$'\n'"$prule"
for k in $kernels; do
	release=$(awk '$1 == "MATRIX" && $2 == "kernel" { print $3 }' "$work/$k.log.txt")
	row="| ${release:-$k} |"
	for key in $probe_keys; do
		v=$(awk -v key="$key" '$1 == "MATRIX" && $2 == "probe" { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == key) print kv[2] } }' "$work/$k.log.txt")
		row="$row ${v:-?} |"
	done
	ptable="$ptable"$'\n'"$row"
done

# Totals over every kernel and step.
read -r tpass tfail tskip < <(cat "$work"/*.log.txt | awk '$1 == "MATRIX" && $2 == "test" {
	for (i = 4; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
	p += v["pass"]; f += v["fail"]; s += v["skip"] }
	END { print p + 0, f + 0, s + 0 }')

phase "done"
echo
echo "$table"
echo
echo "Cells: passed/failed/skipped tests, subtests included."
echo
echo "$ptable"
echo
echo "Across the network device (sendfile2 check --peer, to the peer on the host):"
echo
echo "$dtable"
echo
echo "bench --peer across the device (TCG: read the ratios, not the speeds):"
echo
echo "$btable"
echo
echo "Skips in the guests:"
for k in $kernels; do
	grep -E '^MATRIX skipped ' "$work/$k.log.txt" | sed "s/^MATRIX skipped /   $k: /" || true
done
total=$(($(date +%s) - start))
echo "wall time: ${total}s"

if [ -n "$out" ]; then
	{
		echo "Kernel matrix, $(date -u +%Y-%m-%d), \`$cmdline\`, ${total}s:"
		echo
		echo "$table"
		echo
		echo "$ptable"
		echo
		echo "$dtable"
		echo
		echo "$btable"
	} >"$out"
fi

status=0
if [ ${#problems[@]} -gt 0 ]; then
	failed=1
	status=1
	echo
	echo "FAIL:"
	printf '   %s\n' "${problems[@]}"
	for k in $kernels; do
		# The messages of each failed test (the lines that followed its
		# "=== RUN/CONT/NAME" lines), and the MATRIX errors.
		msgs=$(awk '
			/^=== MATRIX / { cur = ""; next }
			/^=== (RUN|CONT|NAME|PAUSE) / { cur = $3; next }
			/^ *--- FAIL: / { printf "%s%s\n", buf[$3], $0; next }
			/^ *--- (PASS|SKIP): / { next }
			/^MATRIX (error|failed) / { print; next }
			cur != "" { buf[cur] = buf[cur] $0 "\n" }' "$work/$k.log.txt" | head -n 100)
		if [ -n "$msgs" ]; then
			echo
			echo "== $k: failed tests (full console log: $work/$k.log.txt)"
			echo "$msgs"
		fi
	done
	echo
fi
echo "$(echo "$kernels" | wc -w) kernels, ${#problems[@]} problems"
echo "matrix: $tpass passed, $tfail failed, $tskip skipped"
exit $status
