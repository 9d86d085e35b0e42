#!/bin/sh
# Starts Janus (VideoRoom + HTTP API) in a network namespace of its own, as
# ../shared/TESTBED.md describes: Janus skips loopback for media, so the
# namespace gets a veth pair and Janus uses its address. Run the load inside
# the same namespace (`ip netns exec $NS …`). Needs root and `janus`.
#
#   benches/janus/start.sh            # prints: NS=… IP=… URL=… PID=… DIR=…
#   benches/janus/stop.sh             # removes the namespace and its processes
set -eu
NS=${NS:-sbjanus}
IP=${IP:-10.77.0.1}
DIR=$(mktemp -d /tmp/janus-XXXXXX)
LIB=/usr/lib/x86_64-linux-gnu/janus

ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add j0 type veth peer name j1
ip -n "$NS" addr add "$IP/24" dev j0
ip -n "$NS" link set j0 up
ip -n "$NS" link set j1 up

cat > "$DIR/janus.jcfg" <<CFG
general: {
	configs_folder = "$DIR"
	plugins_folder = "$LIB/plugins"
	transports_folder = "$LIB/transports"
	events_folder = "$LIB/events"
	loggers_folder = "$LIB/loggers"
	debug_level = 3
	session_timeout = 120
}
media: {
	rtp_port_range = "20000-40000"
}
nat: {
	ice_enforce_list = "j0"
	full_trickle = false
}
plugins: {
	disable = "libjanus_audiobridge.so,libjanus_echotest.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_nosip.so,libjanus_streaming.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_voicemail.so,libjanus_lua.so,libjanus_duktape.so"
}
transports: {
	disable = "libjanus_websockets.so,libjanus_pfunix.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_rabbitmq.so"
}
events: {
	broadcast = false
}
loggers: {
	disable = "libjanus_jsonlog.so"
}
CFG
cat > "$DIR/janus.transport.http.jcfg" <<CFG
general: {
	json = "plain"
	base_path = "/janus"
	http = true
	port = 8088
	ip = "127.0.0.1"
}
admin: {
	admin_http = false
}
CFG
cat > "$DIR/janus.plugin.videoroom.jcfg" <<CFG
general: {
}
CFG

ip netns exec "$NS" janus -C "$DIR/janus.jcfg" -F "$DIR" -L "$DIR/janus.log" -N >/dev/null 2>&1 &
PID=$!
echo "$PID" > "$DIR/janus.pid"
# Bounded wait for the HTTP API.
i=0
until ip netns exec "$NS" curl -sf -o /dev/null -X POST -d '{"janus":"info","transaction":"t"}' http://127.0.0.1:8088/janus; do
	i=$((i + 1))
	if [ "$i" -gt 50 ]; then echo "Janus did not start; see $DIR/janus.log" >&2; exit 1; fi
	sleep 0.2
done
echo "NS=$NS IP=$IP URL=http://127.0.0.1:8088/janus PID=$PID DIR=$DIR"
