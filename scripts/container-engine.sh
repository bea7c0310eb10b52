#!/usr/bin/env bash
# A container engine for container tasks (and their tests): podman's Docker-compatible API
# service on a unix socket in the project's state dir, with a busybox image made locally.
#
# On a fresh Debian machine, as root: installs podman, runc and busybox-static when missing,
# writes a containers.conf, imports localhost/busybox:test from busybox-static when missing,
# starts `podman system service` unless its socket already answers /_ping, and prints
#
#     DOCKER_HOST=unix://<socket>
#     CONTAINERS_CONF=<file>
#
# for the caller (`eval "$(scripts/container-engine.sh)"`). Idempotent: a second run finds the
# service answering and only prints. Any failure exits non-zero with the reason on stderr.
# `scripts/container-engine.sh stop` stops the service it started.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE="${STATEWRIGHT_ENGINE_DIR:-$PWD/.statewright/podman}"
SOCK="$STATE/podman.sock"
CONF="$STATE/containers.conf"
IMAGE="localhost/busybox:test"

fail() {
  echo "container-engine: $*" >&2
  exit 1
}

ping() {
  curl -sf --max-time 2 --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1
}

if [ "${1:-}" = stop ]; then
  if [ -f "$SOCK.pid" ] && kill "$(cat "$SOCK.pid")" 2>/dev/null; then
    echo "container-engine: stopped the service on $SOCK" >&2
  fi
  rm -f "$SOCK.pid"
  exit 0
fi

missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
[ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 || missing+=(busybox-static)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || fail "${missing[*]} missing, and installing needs root (apt-get)"
  command -v apt-get >/dev/null 2>&1 || fail "${missing[*]} missing and no apt-get to install"
  echo "container-engine: installing ${missing[*]}" >&2
  apt-get update -qq >&2 || fail "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 \
    || fail "apt-get install ${missing[*]} failed"
fi

mkdir -p "$STATE"
# Without these podman fails here: no systemd (cgroupfs, events to a file), no network
# namespaces to spare (netns none; tasks get Network "none" unless they ask otherwise).
cat >"$CONF.new" <<'EOF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
netns = "none"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
mv "$CONF.new" "$CONF"
export CONTAINERS_CONF="$CONF"

if ! podman image exists "$IMAGE" 2>/dev/null; then
  echo "container-engine: importing $IMAGE from busybox-static" >&2
  build="$(mktemp -d)"
  trap 'rm -rf "$build"' EXIT
  mkdir -p "$build/rootfs/bin" "$build/rootfs/tmp"
  cp /bin/busybox "$build/rootfs/bin/"
  for applet in $("$build/rootfs/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$build/rootfs/bin/$applet"
  done
  tar -C "$build/rootfs" -cf "$build/busybox.tar" .
  podman import --change 'CMD ["/bin/sh"]' "$build/busybox.tar" "$IMAGE" >&2 \
    || fail "podman import of $IMAGE failed"
fi

if ! ping; then
  if [ -f "$SOCK.pid" ]; then
    kill "$(cat "$SOCK.pid")" 2>/dev/null || true
  fi
  rm -f "$SOCK"
  # setsid: the service outlives the caller's session (the test run that started it).
  setsid podman system service --time=0 "unix://$SOCK" >"$STATE/service.log" 2>&1 </dev/null &
  echo $! >"$SOCK.pid"
  for _ in $(seq 200); do
    ping && break
    kill -0 "$(cat "$SOCK.pid")" 2>/dev/null \
      || fail "podman system service exited: $(tail -5 "$STATE/service.log")"
    sleep 0.05
  done
  ping || fail "podman system service does not answer /_ping on $SOCK after 10 s: \
$(tail -5 "$STATE/service.log")"
  echo "container-engine: podman system service started on $SOCK" >&2
fi

echo "DOCKER_HOST=unix://$SOCK"
echo "CONTAINERS_CONF=$CONF"
