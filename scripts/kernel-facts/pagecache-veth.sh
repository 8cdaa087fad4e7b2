#!/bin/sh
# pagecache-veth.sh: pagecache.c across a veth pair between two network
# namespaces that it creates (kf-send-$$, kf-recv-$$, 10.211.0.1/2) and removes.
# Root and iproute2.
#   sh scripts/kernel-facts/pagecache-veth.sh [DIR]
set -eu
here=$(dirname "$0")
a=kf-send-$$ b=kf-recv-$$
cleanup() { ip netns del "$a" 2>/dev/null || true; ip netns del "$b" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$a"
ip netns add "$b"
ip link add kfs$$ netns "$a" type veth peer name kfr$$ netns "$b"
ip -n "$a" addr add 10.211.0.1/24 dev kfs$$
ip -n "$b" addr add 10.211.0.2/24 dev kfr$$
ip -n "$a" link set kfs$$ up
ip -n "$b" link set kfr$$ up
gcc -O2 -o /tmp/kf-pagecache "$here/pagecache.c"
/tmp/kf-pagecache "${1:-.}" "$a" "$b" 10.211.0.2
