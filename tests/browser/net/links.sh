#!/bin/bash
# Network namespaces for browser tests whose clients need links of their own
# (../../shared/TESTBED.md: netns, veth and tbf work here; netem does not).
#
#   links.sh up N      namespace sbt-srv for the server, sbt-c1..sbt-cN for
#                      clients, all on one bridge in sbt-srv (one subnet, so
#                      the server's replies leave from the address it was
#                      sent to): the server is 10.77.1.1, client i 10.77.1.(i+1),
#                      the test runner (root namespace) 10.77.1.200.
#   links.sh up N ipv6  the same, dual stack: also fd77::1 for the server and
#                      fd77::(i+1) for client i (no autoconfiguration, no
#                      duplicate address detection: nothing changes later).
#   links.sh cap I KBIT   caps what the server sends to client I (its
#                      downlink) with a tbf; KBIT 0 lifts the cap.
#   links.sh loss I PCT  drops PCT % of client I's UDP datagrams, each way,
#                      at random (nft numgen in its namespace); 0 stops it.
#   links.sh block-udp I on|off [ipv4|ipv6]  drops all of client I's UDP (a
#                      network that lets only TCP out), or one family's.
#   links.sh block-tcp I PORT on|off  refuses (TCP reset) client I's
#                      connections to the server's PORT, in its namespace.
#   links.sh readdress I N  moves client I to address 10.77.1.N (its old
#                      one is gone at once, as when a phone changes networks).
#   links.sh nat       adds client namespace sbt-n1 (192.168.9.2) behind a
#                      NAT: router sbt-rt is 10.77.1.50 on the bridge and
#                      masquerades what the client sends (after `up`).
#   links.sh down      removes everything (also what a crashed run left).
#
# Everything is inside namespaces this script made, plus one veth in the root
# namespace on their subnet; nothing else is touched.
set -eu
cmd=$1
srv=sbt-srv

down() {
  for ns in $(ip netns list | awk '/^sbt-/ {print $1}'); do ip netns del "$ns"; done
  ip link del sbt-root 2>/dev/null || true
}

# No IPv6 in the namespaces unless asked for: a link-local address finishing
# duplicate address detection a second after the link is up is a network
# change to Chromium, which then fails the navigation under way
# (net::ERR_NETWORK_CHANGED). With ipv6, addresses are static and immediate.
ipv6=${3:-}
no_ipv6() {
  if [ "$ipv6" = ipv6 ]; then
    ip netns exec "$1" sysctl -qw net.ipv6.conf.default.addr_gen_mode=1 net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  else
    ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  fi
}
# Gives interface $2 of namespace $1 the IPv6 address $3, with ipv6.
addr6() {
  if [ "$ipv6" = ipv6 ]; then ip -n "$1" addr add "$3/64" dev "$2" nodad; fi
}

case "$cmd" in
  up)
    n=$2
    down
    ip netns add $srv
    no_ipv6 $srv
    ip -n $srv link set lo up
    ip -n $srv link add sbt-br type bridge
    ip -n $srv addr add 10.77.1.1/24 dev sbt-br
    addr6 $srv sbt-br fd77::1
    ip -n $srv link set sbt-br up
    ip link add sbt-root type veth peer name sbt-r0 netns $srv
    ip -n $srv link set sbt-r0 master sbt-br up
    ip addr add 10.77.1.200/24 dev sbt-root
    ip link set sbt-root up
    for i in $(seq "$n"); do
      ns=sbt-c$i
      ip netns add "$ns"
      no_ipv6 "$ns"
      ip -n "$ns" link set lo up
      # sbt-s<i> is client i's port on the bridge: its egress is the client's downlink.
      ip -n $srv link add "sbt-s$i" type veth peer name eth0 netns "$ns"
      ip -n $srv link set "sbt-s$i" master sbt-br up
      ip -n "$ns" addr add "10.77.1.$((i + 1))/24" dev eth0
      addr6 "$ns" eth0 "fd77::$((i + 1))"
      ip -n "$ns" link set eth0 up
    done
    ;;
  cap)
    i=$2 kbit=$3
    ip netns exec $srv tc qdisc del dev "sbt-s$i" root 2>/dev/null || true
    if [ "$kbit" != 0 ]; then
      # A 50 ms bucket and up to 400 ms of queue, like an access link: it
      # delays a burst (a keyframe), then drops what does not fit.
      burst=$(( kbit * 1000 / 8 / 20 )); [ "$burst" -lt 5000 ] && burst=5000
      ip netns exec $srv tc qdisc add dev "sbt-s$i" root tbf rate "${kbit}kbit" burst "$burst" latency 400ms
    fi
    ;;
  loss)
    i=$2 pct=$3
    ip netns exec "sbt-c$i" nft delete table inet sbt-loss 2>/dev/null || true
    if [ "$pct" != 0 ]; then
      ip netns exec "sbt-c$i" nft -f - <<NFT
table inet sbt-loss {
  chain in { type filter hook input priority 0; meta l4proto udp numgen random mod 100 < $pct drop; }
  chain out { type filter hook output priority 0; meta l4proto udp numgen random mod 100 < $pct drop; }
}
NFT
    fi
    ;;
  block-udp)
    i=$2 family=""
    [ "${4:-}" = ipv4 ] && family="meta nfproto ipv4"
    [ "${4:-}" = ipv6 ] && family="meta nfproto ipv6"
    ip netns exec "sbt-c$i" nft delete table inet sbt-noudp 2>/dev/null || true
    if [ "$3" = on ]; then
      ip netns exec "sbt-c$i" nft -f - <<NFT
table inet sbt-noudp {
  chain in { type filter hook input priority 0; $family meta l4proto udp drop; }
  chain out { type filter hook output priority 0; $family meta l4proto udp drop; }
}
NFT
    fi
    ;;
  block-tcp)
    i=$2 port=$3
    ip netns exec "sbt-c$i" nft delete table inet sbt-notcp 2>/dev/null || true
    if [ "$4" = on ]; then
      ip netns exec "sbt-c$i" nft -f - <<NFT
table inet sbt-notcp {
  chain out { type filter hook output priority 0; ip daddr 10.77.1.1 tcp dport $port reject with tcp reset; }
}
NFT
    fi
    ;;
  readdress)
    i=$2 n=$3
    ip -n "sbt-c$i" addr flush dev eth0
    ip -n "sbt-c$i" addr add "10.77.1.$n/24" dev eth0
    ;;
  nat)
    ip netns add sbt-rt
    no_ipv6 sbt-rt
    ip -n sbt-rt link set lo up
    ip -n $srv link add sbt-sr type veth peer name eth0 netns sbt-rt
    ip -n $srv link set sbt-sr master sbt-br up
    ip -n sbt-rt addr add 10.77.1.50/24 dev eth0
    ip -n sbt-rt link set eth0 up
    ip netns add sbt-n1
    no_ipv6 sbt-n1
    ip -n sbt-n1 link set lo up
    ip -n sbt-rt link add lan type veth peer name eth0 netns sbt-n1
    ip -n sbt-rt addr add 192.168.9.1/24 dev lan
    ip -n sbt-rt link set lan up
    ip -n sbt-n1 addr add 192.168.9.2/24 dev eth0
    ip -n sbt-n1 link set eth0 up
    ip -n sbt-n1 route add default via 192.168.9.1
    ip netns exec sbt-rt sysctl -qw net.ipv4.ip_forward=1
    ip netns exec sbt-rt nft -f - <<NFT
table ip sbt-nat {
  chain post { type nat hook postrouting priority 100; oifname "eth0" masquerade; }
}
NFT
    ;;
  down) down ;;
  *) echo "usage: $0 up N [ipv6] | cap I KBIT | loss I PCT | block-udp I on|off [ipv4|ipv6] | block-tcp I PORT on|off | readdress I N | nat | down" >&2; exit 2 ;;
esac
