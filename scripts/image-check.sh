#!/usr/bin/env bash
# Builds the Dockerfile with podman and runs the image against Postgres: the check that the
# container image works, on a machine that reaches no container registry. A manual check (it
# takes minutes and downloads Debian packages the first time), not part of CI or the tests.
#
#   bash scripts/image-check.sh          # as root on Debian; prints what it does, exits non-zero on failure
#
# 1. podman (scripts/container-engine.sh installs it).
# 2. The base: localhost/statewright-base:bookworm, a stand-in for python:3.11-slim made from
#    Debian bookworm (python3 3.11, python3-venv, python3-pip) with debootstrap from the Debian
#    mirror apt uses here; built once, then reused (IMAGE_CHECK_REBUILD_BASE=1 makes it again).
# 3. The image: `podman build --build-arg BASE_IMAGE=<the base>`; pip in the build gets this
#    machine's pip settings (index URLs, CA bundle, timeout; read at run time, not kept here).
#    Build time and image size are printed. IMAGE_CHECK_NO_CACHE=1 builds without the cache.
# 4. The image's own CMD (db upgrade, then `serve` with auth), on host networking with a free
#    port in place of 8080, against a new database swimage_<random> on the machine's Postgres
#    (IMAGE_CHECK_PG, default postgresql://postgres@127.0.0.1:5432, trust auth): /healthz, an API
#    key made in the container, a state machine and an execution to SUCCEEDED through the REST
#    API, the process's uid (10001, not root).
# 5. docker-compose.yml's api and worker commands and environment on the same image: an
#    execution that only the worker container can run, to SUCCEEDED. (Its postgres:16 service
#    needs a registry: the machine's Postgres stands in.)
# The containers and the database are removed at the end, pass or fail; the images are kept.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE="${IMAGE_CHECK_BASE:-localhost/statewright-base:bookworm}"
IMAGE="${IMAGE_CHECK_IMAGE:-localhost/statewright:check}"
PG="${IMAGE_CHECK_PG:-postgresql://postgres@127.0.0.1:5432}"
RUN_ID="$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')"
DB="swimage_$RUN_ID"
CONTAINERS=()
WORK="$(mktemp -d)"
DB_MADE=""

say() { echo "image-check: $*" >&2; }

logs() {
  for c in "${CONTAINERS[@]}"; do
    echo "---- last lines of container $c:" >&2
    podman logs --tail 30 "$c" >&2 2>&1 || true
  done
}

fail() {
  echo "image-check: FAILED: $*" >&2
  [ ${#CONTAINERS[@]} -eq 0 ] || logs
  exit 1
}

cleanup() {
  local rc=$?
  for c in "${CONTAINERS[@]}"; do
    podman rm -f -t 2 "$c" >/dev/null 2>&1 || say "could not remove container $c"
  done
  if [ -n "$DB_MADE" ]; then
    psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 \
      || say "could not drop database $DB"
  fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || fail "run as root (apt-get, debootstrap and podman's storage need it)"
command -v python3 >/dev/null || fail "python3 is needed on this machine"
command -v curl >/dev/null || fail "curl is needed on this machine"
command -v psql >/dev/null || fail "psql is needed (apt-get install postgresql-client)"

# ---- 1. the engine -------------------------------------------------------------------------
engine_env="$(bash scripts/container-engine.sh)" || fail "scripts/container-engine.sh failed"
# Only its containers.conf (runc, cgroupfs, no systemd) is needed here, not its API service.
CONTAINERS_CONF="$(sed -n 's/^CONTAINERS_CONF=//p' <<<"$engine_env")"
export CONTAINERS_CONF
say "podman $(podman version --format '{{.Client.Version}}')"

# ---- 2. the base image ---------------------------------------------------------------------
# The mirror of Debian (not -security) that apt uses here, from its sources (one-line .list
# and deb822 .sources); DEBIAN_MIRROR overrides.
debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then
    echo "$DEBIAN_MIRROR"
    return
  fi
  python3 - <<'PY'
import glob, re, sys

found = []  # (takes bookworm, uri)
for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        m = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line.split("#", 1)[0])
        if m:
            found.append((m.group(2) == "bookworm", m.group(1)))
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in re.split(r"\n\s*\n", open(path).read()):
        fields = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.split()
        if "deb" not in fields.get("types", []) or fields.get("enabled", ["yes"]) == ["no"]:
            continue
        for uri in fields.get("uris", []):
            found.append(("bookworm" in fields.get("suites", []), uri))
debian = [(b, u) for b, u in found if u.rstrip("/").endswith("/debian")]
for _, uri in sorted(debian, key=lambda f: not f[0]):
    print(uri)
    sys.exit(0)
sys.exit(1)
PY
}

if [ "${IMAGE_CHECK_REBUILD_BASE:-}" = 1 ] || ! podman image exists "$BASE"; then
  mirror="$(debian_mirror)" || fail "no Debian mirror in apt's sources: set DEBIAN_MIRROR"
  if ! command -v debootstrap >/dev/null; then
    say "installing debootstrap"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2 \
      || fail "apt-get install debootstrap failed"
  fi
  say "building $BASE: debootstrap bookworm from apt's Debian mirror (a few minutes)"
  started=$(date +%s)
  rootfs="$WORK/rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
    || fail "debootstrap failed: $(tail -5 "$WORK/debootstrap.log")"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  # As the official image: python on PATH, a UTF-8 locale; `python3` is the interpreter.
  tar --numeric-owner -C "$rootfs" -c . | podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' - "$BASE" >/dev/null || fail "podman import of $BASE failed"
  rm -rf "$rootfs"
  say "built $BASE in $(($(date +%s) - started)) s"
else
  say "reusing $BASE (IMAGE_CHECK_REBUILD_BASE=1 to make it again)"
fi
podman run --rm --network none "$BASE" python3 -c 'import sys, venv; assert sys.version_info[:2] == (3, 11), sys.version' \
  || fail "$BASE has no Python 3.11 with venv"

# ---- 3. the Statewright image --------------------------------------------------------------
# pip in the build sees this machine's settings: a pip.conf in /etc/xdg/pip of the build's
# containers (a bind mount of RUN steps: only its empty mount point is left in the image) with
# the index URLs (http/https only: local paths are not there), the CA bundle pip trusts and
# timeouts.
pipconf="$WORK/pip"
mkdir -p "$pipconf"
python3 - "$pipconf" <<'PY' || fail "could not read this machine's pip configuration"
import os, shutil, sys
from pip._internal.configuration import Configuration

out = sys.argv[1]
config = Configuration(isolated=False)
config.load()
values = {}
# pip's own order: [global], then [install], then PIP_* variables.
for section in ("global", "install", ":env:"):
    for name, value in config.items():
        sect, _, key = name.partition(".")
        if sect == section:
            values[key.replace("_", "-")] = value
def remote(urls):
    return " ".join(u for u in urls.split() if u.startswith(("http://", "https://")))
lines = []
for key in ("index-url", "extra-index-url"):
    if remote(values.get(key, "")):
        lines.append(f"{key} = {remote(values[key])}")
for key in ("trusted-host", "proxy", "timeout", "default-timeout", "retries"):
    if values.get(key):
        lines.append(f"{key} = {values[key]}")
cert = values.get("cert") or os.environ.get("REQUESTS_CA_BUNDLE")
if cert and os.path.isfile(cert):
    shutil.copyfile(cert, os.path.join(out, "ca.crt"))
    lines.append("cert = /etc/xdg/pip/ca.crt")
with open(os.path.join(out, "pip.conf"), "w") as f:
    f.write("[global]\n" + "".join(line + "\n" for line in lines))
print("image-check: pip in the build: " + (", ".join(l.split(" =")[0] for l in lines) or "defaults"), file=sys.stderr)
PY

build_args=(--network host -v "$pipconf:/etc/xdg/pip:ro" --build-arg "BASE_IMAGE=$BASE" -t "$IMAGE")
[ "${IMAGE_CHECK_NO_CACHE:-}" = 1 ] && build_args+=(--no-cache)
say "building $IMAGE from the Dockerfile on $BASE"
started=$(date +%s)
podman build "${build_args[@]}" . >"$WORK/build.log" 2>&1 \
  || { tail -30 "$WORK/build.log" >&2; fail "podman build failed (the end of its log is above)"; }
build_seconds=$(($(date +%s) - started))
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
base_size=$(podman image inspect --format '{{.Size}}' "$BASE")
mib() { awk -v b="$1" 'BEGIN { printf "%.0f MiB", b / 1048576 }'; }
say "built $IMAGE in $build_seconds s: $(mib "$size") (base $(mib "$base_size"), Statewright's layers $(mib $((size - base_size))))"
[ "$(podman image inspect --format '{{.Config.User}}' "$IMAGE")" = statewright ] \
  || fail "the image's USER is not statewright"

# ---- 4. the image's CMD against Postgres ---------------------------------------------------
psql -q "$PG/postgres" -c 'SELECT 1' >/dev/null 2>&1 \
  || fail "no Postgres at $PG (set IMAGE_CHECK_PG to a superuser URL without the database)"
psql -q "$PG/postgres" -c "CREATE DATABASE $DB" >/dev/null || fail "CREATE DATABASE $DB failed"
DB_MADE=1
DATABASE_URL="$PG/$DB"
say "database $DB"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The image's CMD with another port in place of 8080: on host networking 8080 may be taken.
# ARGV: the port; prints the command NUL-separated.
cmd_on_port() {
  podman image inspect --format '{{json .Config.Cmd}}' "$IMAGE" | python3 -c '
import json, sys
cmd = json.load(sys.stdin)
swapped = [part.replace("--port 8080", "--port " + sys.argv[1]) for part in cmd]
if swapped == cmd:
    sys.exit("the CMD has no --port 8080: update scripts/image-check.sh")
sys.stdout.write("".join(part + "\0" for part in swapped))' "$1"
}

SECRET_KEY="$(podman run --rm --network none "$IMAGE" statewright keys server-key)" \
  || fail "statewright keys server-key failed in the image"

# ARGV: name, port. Waits for /healthz (the container still running) with a deadline.
wait_healthy() {
  local deadline=$(($(date +%s) + ${IMAGE_CHECK_START_SECONDS:-90}))
  until curl -sf --max-time 2 "http://127.0.0.1:$2/healthz" >/dev/null; do
    [ "$(podman inspect --format '{{.State.Running}}' "$1" 2>/dev/null)" = true ] \
      || fail "container $1 exited before /healthz answered"
    [ "$(date +%s)" -lt "$deadline" ] || fail "/healthz of $1 did not answer within the deadline"
    sleep 0.5
  done
}

# ARGV: port, API key, machine name. Creates the README tour's greeter and runs it to SUCCEEDED.
run_greeter() {
  local port=$1 key=$2 name=$3 api="http://127.0.0.1:$1/api/v1" body status id deadline
  body=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$api/state-machines" \
    -H 'content-type: application/json' -d '{}') || true
  [ "$body" = 401 ] || fail "a request without an API key got $body, not 401 (is auth on?)"
  curl -sf -X POST "$api/state-machines" -H "authorization: Bearer $key" \
    -H 'content-type: application/json' -d '{"name": "'"$name"'", "definition": {"StartAt": "Hi",
      "States": {"Hi": {"Type": "Pass", "Parameters": {"msg.$": "States.Format('"'"'Hello, {}!'"'"', $.who)"},
      "End": true}}}}' >"$WORK/machine.json" || fail "creating state machine $name failed"
  curl -sf -X POST "$api/state-machines/$name/executions" -H "authorization: Bearer $key" \
    -H 'content-type: application/json' -d '{"input": {"who": "Ada"}}' >"$WORK/start.json" \
    || fail "starting an execution of $name failed"
  id=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])' <"$WORK/start.json") \
    || fail "no execution id in $(cat "$WORK/start.json")"
  deadline=$(($(date +%s) + 60))
  while :; do
    curl -sf "$api/executions/$id" -H "authorization: Bearer $key" >"$WORK/execution.json" \
      || fail "GET /executions/$id failed"
    status=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])' <"$WORK/execution.json")
    [ "$status" = RUNNING ] || break
    [ "$(date +%s)" -lt "$deadline" ] || fail "execution $id still RUNNING after 60 s"
    sleep 0.2
  done
  [ "$status" = SUCCEEDED ] || fail "execution $id ended $status: $(cat "$WORK/execution.json")"
  grep -q 'Hello, Ada!' "$WORK/execution.json" || fail "execution $id's output: $(cat "$WORK/execution.json")"
  say "execution $id of $name: SUCCEEDED, output $(python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["output"]))' <"$WORK/execution.json")"
}

# ARGV: container name. Makes an API key in the container (its env has the database and key).
make_key() {
  podman exec "$1" statewright keys create --name image-check --json | python3 -c '
import json, sys; k = json.load(sys.stdin); print(k["id"] + ":" + k["secret"])'
}

port=$(free_port)
mapfile -d '' cmd < <(cmd_on_port "$port") || true
[ ${#cmd[@]} -gt 0 ] || fail "could not read the image's CMD"
serve="swimage-serve-$RUN_ID"
CONTAINERS+=("$serve")
say "running the image's CMD on port $port: ${cmd[*]}"
started=$(date +%s)
podman run -d --name "$serve" --network host \
  -e "STATEWRIGHT_DATABASE_URL=$DATABASE_URL" -e "STATEWRIGHT_SECRET_KEY=$SECRET_KEY" \
  "$IMAGE" "${cmd[@]}" >/dev/null || fail "podman run $IMAGE failed"
wait_healthy "$serve" "$port"
say "/healthz answered $(($(date +%s) - started)) s after the start (migrations included)"
# /readyz: the database answers and has the schema of the migrations in the image.
ready=$(curl -s --max-time 5 "http://127.0.0.1:$port/readyz") || true
grep -q '"ready"' <<<"$ready" || fail "/readyz: $ready"
key=$(make_key "$serve") || fail "statewright keys create failed in the container"
run_greeter "$port" "$key" greeter

uid=$(podman exec "$serve" id -u) || fail "podman exec id failed"
[ "$uid" = 10001 ] || fail "podman exec runs as uid $uid, not 10001"
pid1=$(podman exec "$serve" sh -c 'tr "\0" " " </proc/1/cmdline; echo; grep "^Uid:" /proc/1/status')
grep -q 'statewright serve' <<<"$pid1" || fail "process 1 is not statewright serve: $pid1"
awk '/^Uid:/ { exit !($2 == 10001 && $3 == 10001) }' <<<"$pid1" \
  || fail "process 1 does not run as uid 10001: $pid1"
say "process 1 (statewright serve) runs as uid 10001 (user statewright), not root"
podman rm -f -t 5 "$serve" >/dev/null

# ---- 5. docker-compose.yml's commands on the image -----------------------------------------
# Its api (no workers of its own) and one worker, with its commands and environment names
# (the database URL pointing at the machine's Postgres instead of its postgres service).
python3 - docker-compose.yml "$WORK/compose" <<'PY' || fail "docker-compose.yml: see above"
import json, sys
import yaml

compose = yaml.safe_load(open(sys.argv[1]))
services = compose["services"]
for name in ("postgres", "api", "worker"):
    if name not in services:
        sys.exit(f"docker-compose.yml has no {name} service")
for name in ("api", "worker"):
    service = services[name]
    if service.get("build") != ".":
        sys.exit(f"docker-compose.yml: {name} is not built from the Dockerfile")
    command = service["command"]
    env = sorted(service.get("environment", {}))
    json.dump({"command": command, "env": env}, open(f"{sys.argv[2]}.{name}.json", "w"))
    print(f"image-check: compose {name}: {command} with {', '.join(env)}", file=sys.stderr)
PY
compose_cmd() {  # ARGV: service, port; prints its command NUL-separated, the port swapped
  python3 -c '
import json, sys
cmd = json.load(open(sys.argv[1]))["command"]
sys.stdout.write("".join(p.replace("--port 8080", "--port " + sys.argv[2]) + "\0" for p in cmd))' \
    "$WORK/compose.$1.json" "$2"
}
compose_env() {  # ARGV: service; prints -e NAME=VALUE arguments NUL-separated
  python3 -c '
import json, sys
known = {"STATEWRIGHT_DATABASE_URL": sys.argv[2], "STATEWRIGHT_SECRET_KEY": sys.argv[3]}
for name in json.load(open(sys.argv[1]))["env"]:
    if name not in known:
        sys.exit(f"docker-compose.yml sets {name}: teach scripts/image-check.sh its value")
    sys.stdout.write(f"-e\0{name}={known[name]}\0")' "$WORK/compose.$1.json" "$DATABASE_URL" "$SECRET_KEY"
}
# Every STATEWRIGHT_* name compose sets is a setting the image knows.
podman run --rm -i --network none "$IMAGE" python3 -c '
import json, sys
from service.settings import Settings
known = {"STATEWRIGHT_" + f.upper() for f in Settings.model_fields}
names = set(json.load(open("/dev/stdin")))
unknown = names - known
if unknown:
    sys.exit(f"docker-compose.yml sets unknown settings: {sorted(unknown)}")' \
  < <(python3 -c 'import json, sys; print(json.dumps(sorted(set(json.load(open(sys.argv[1]))["env"]) | set(json.load(open(sys.argv[2]))["env"]))))' \
      "$WORK/compose.api.json" "$WORK/compose.worker.json") \
  || fail "docker-compose.yml's environment names are not all settings of the image"

port=$(free_port)
api="swimage-api-$RUN_ID"
worker="swimage-worker-$RUN_ID"
CONTAINERS+=("$api" "$worker")
mapfile -d '' cmd < <(compose_cmd api "$port")
mapfile -d '' env < <(compose_env api) || true
[ ${#env[@]} -gt 0 ] || fail "no environment for compose's api"
podman run -d --name "$api" --network host "${env[@]}" "$IMAGE" "${cmd[@]}" >/dev/null \
  || fail "podman run of compose's api failed"
wait_healthy "$api" "$port"
mapfile -d '' cmd < <(compose_cmd worker "$port")
mapfile -d '' env < <(compose_env worker) || true
[ ${#env[@]} -gt 0 ] || fail "no environment for compose's worker"
podman run -d --name "$worker" --network host "${env[@]}" "$IMAGE" "${cmd[@]}" >/dev/null \
  || fail "podman run of compose's worker failed"
say "compose's api on port $port and its worker are up"
key=$(make_key "$api") || fail "statewright keys create failed in the api container"
run_greeter "$port" "$key" greeter-compose
[ "$(podman inspect --format '{{.State.Running}}' "$worker")" = true ] || fail "the worker exited"

say "OK: $IMAGE built on $BASE in $build_seconds s, $(mib "$size"); its CMD and compose's api + worker ran executions to SUCCEEDED as uid 10001"
