#!/usr/bin/env bash
# `make test-deploy`: build FrameFleet's images and run the compose dev profile for real with podman.
#
# 1. installs podman, buildah, runc, debootstrap and promtool from Debian, and podman-compose from PyPI
#    into a virtual environment of its own;
# 2. builds a Debian base image with debootstrap, tagged with the name docker/Dockerfile's FROM uses (cached
#    under $DEPLOY_CACHE), and stand-ins for the Redis, PostgreSQL and MinIO images compose.yaml names;
# 3. builds docker/Dockerfile and docker/Dockerfile.gpu (the GPU base stood in by the same Debian image);
# 4. checks every profile with `podman-compose config` and the Prometheus config and rules with promtool;
# 5. starts the dev profile, submits a job through the published API with curl, follows it over SSE to
#    success and decodes the output (tests/deploy/e2e_dev.py), on SQLite and again on PostgreSQL, then
#    tears everything down, also on failure (DEPLOY_KEEP=1 leaves the stack running).
#
# What this machine needs and a real deployment does not stays here: runc instead of crun, ulimits under
# the hard limits, the host's CA bundle in the base image, health checks driven by this script (podman
# runs them from systemd timers, and there is no systemd here), and a start in compose's dependency order
# driven from here (podman-compose skips `service_healthy` conditions on podman < 4.6, and podman 4.3
# cannot start a container whose --requires chain is longer than one step).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
# Compose reads FRAMEFLEET_* from this shell: start from the profiles' own defaults.
for variable in $(compgen -e | grep '^FRAMEFLEET_' || true); do unset "$variable"; done
PROJECT=framefleet-ci
CACHE=${DEPLOY_CACHE:-$HOME/.cache/framefleet-deploy}
PODMAN_COMPOSE_VERSION=1.6.0
STARTED=$(date +%s)
mkdir -p "$CACHE"
WORK=$(mktemp -d)
HEALTH_PID=""
PODMAN_COMPOSE=""
SUMMARY=""
PASSED=0
FAILED=0

# ------------------------------------------------------------------ teardown, also on failure
compose() {
  "$PODMAN_COMPOSE" --in-pod false --project-name "$PROJECT" --file compose.yaml "$@"
}
teardown() {
  local status=$?
  set +e
  [ -n "$HEALTH_PID" ] && kill "$HEALTH_PID" 2>/dev/null
  if [ $status -ne 0 ] && command -v podman >/dev/null; then
    echo "---- container logs (failure) ----"
    for c in $(podman ps -a --filter "label=io.podman.compose.project=$PROJECT" --format '{{.Names}}'); do
      echo "---- $c"; podman logs --tail 40 "$c" 2>&1
    done
  fi
  if [ -n "${DEPLOY_KEEP:-}" ]; then
    say "DEPLOY_KEEP is set: leaving project $PROJECT running (podman-compose -p $PROJECT down -v to remove)"
    rm -rf "$WORK"; exit $status
  fi
  say "tearing down"
  [ -n "$PODMAN_COMPOSE" ] && compose --profile dev down --volumes --timeout 5 >/dev/null 2>&1
  podman rm --force --volumes \
    $(podman ps -aq --filter "label=io.podman.compose.project=$PROJECT") >/dev/null 2>&1
  podman volume rm --force \
    $(podman volume ls -q --filter "label=io.podman.compose.project=$PROJECT") >/dev/null 2>&1
  podman network rm --force "${PROJECT}_default" >/dev/null 2>&1
  rm -rf "$WORK"
  say "done (exit $status)"
  # The test runner's closing line comes last.
  if [ $status -ne 0 ] && [ "$FAILED" = 0 ]; then FAILED=1; fi
  [ -z "$SUMMARY" ] && [ $status -eq 0 ] || echo "$PASSED passed, $FAILED failed"
  exit $status
}
trap teardown EXIT
trap 'exit 130' INT TERM


say() { printf '\n== [%4ss] %s\n' "$(($(date +%s) - STARTED))" "$*"; }
die() { echo "test-deploy: $*" >&2; exit 1; }

# ------------------------------------------------------------------ tools
need_apt=()
for pair in podman:podman buildah:buildah runc:runc debootstrap:debootstrap promtool:prometheus \
            curl:curl; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need_apt+=("${pair#*:}")
done
# Container name resolution on podman's CNI network comes from the dnsname plugin.
[ -x /usr/lib/cni/dnsname ] || need_apt+=(golang-github-containernetworking-plugin-dnsname)
if [ ${#need_apt[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing ${need_apt[*]} and not root to install them"
  say "installing ${need_apt[*]} from Debian"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${need_apt[@]}" uidmap slirp4netns containernetworking-plugins >/dev/null
fi
PC_VENV=$CACHE/podman-compose-$PODMAN_COMPOSE_VERSION
if [ ! -x "$PC_VENV/bin/podman-compose" ]; then
  say "installing podman-compose $PODMAN_COMPOSE_VERSION into $PC_VENV"
  python3 -m venv "$PC_VENV"
  "$PC_VENV/bin/pip" install --quiet "podman-compose==$PODMAN_COMPOSE_VERSION"
fi
PODMAN_COMPOSE=$PC_VENV/bin/podman-compose
[ -x .venv/bin/python ] || die ".venv is missing: run make test (or pip install -e '.[dev]') first"

# runc, and ulimits inside the machine's hard limits (podman's defaults exceed them here).
# Processes: also no more than pid_max, which is what runc may raise the limit to here.
lowest() { printf '%s\n' "$@" | grep -v unlimited | sort -n | head -n1; }
nofile=$(lowest "$(ulimit -Hn)" "$(cat /proc/sys/fs/nr_open)" 1048576)
nproc=$(lowest "$(ulimit -Hu)" "$(cat /proc/sys/kernel/pid_max)" 1048576)
cat > "$WORK/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF=$WORK/containers.conf

# ------------------------------------------------------------------ images
from_of() { sed -n 's/^FROM \([^ ]*\).*/\1/p' "$1" | head -n1; }
BASE=$(from_of docker/Dockerfile)
GPU_BASE=$(from_of docker/Dockerfile.gpu)
SUITE=$(printf '%s' "$BASE" | sed -n 's/^debian:\([a-z]*\)-.*/\1/p')
[ -n "$SUITE" ] || die "cannot read a Debian suite from FROM $BASE"

# The mirror apt uses here: debootstrap must fetch from the same place.
MIRROR=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
           /etc/apt/sources.list.d/*.list 2>/dev/null \
         | grep -v -- '-security' | sed -E 's/^URIs: *//; s/^deb (\[[^]]*\] )?//; s/ .*//' \
         | grep -E '/debian/?$' | head -n1 || true)
[ -n "$MIRROR" ] || die "no Debian mirror found in /etc/apt/sources.list(.d)"

# pip inside image builds uses the index host pip uses (only http(s) ones reach into a build).
pip_conf() {
  python3 -m pip config list 2>/dev/null | sed -n "s/^[^=]*\.$1='\(.*\)'$/\1/p" | head -n1
}
PIP_INDEX=${PIP_INDEX_URL:-$(pip_conf index-url)}
PIP_EXTRA=${PIP_EXTRA_INDEX_URL:-$(pip_conf extra-index-url)}
PIP_EXTRA=$(printf '%s\n' $PIP_EXTRA | grep -E '^https?://' | tr '\n' ' ' | sed 's/ $//' || true)
case "$PIP_INDEX" in http://*|https://*|'') ;; *) PIP_INDEX="" ;; esac
PIP_ARGS=(--build-arg "PIP_INDEX_URL=$PIP_INDEX" --build-arg "PIP_EXTRA_INDEX_URL=$PIP_EXTRA")

BASE_TAR=$CACHE/$(printf '%s' "$BASE" | tr ':/' '__').$(printf '%s' "$MIRROR" | md5sum | cut -c1-8).tar
if ! podman image exists "$BASE"; then
  if [ ! -s "$BASE_TAR" ]; then
    say "debootstrap $SUITE from $MIRROR"
    rootfs=$WORK/rootfs
    debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$rootfs" "$MIRROR" \
      > "$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log"; die "debootstrap failed"; }
    # Trust what the host trusts (its package index may sit behind a TLS-inspecting proxy).
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/usr/local/share/ca-certificates/host-ca-bundle.crt"
    chroot "$rootfs" update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed"
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/*
    tar -C "$rootfs" -cf "$BASE_TAR.part" . && mv "$BASE_TAR.part" "$BASE_TAR"
    rm -rf "$rootfs"
  fi
  say "importing the base image as $BASE"
  podman import --change 'CMD ["bash"]' "$BASE_TAR" "$BASE" >/dev/null
fi
podman tag "$BASE" "$GPU_BASE"

compose_image() {  # the image compose.yaml names for a service (its default)
  .venv/bin/python - "$1" <<'EOF'
import re, sys, yaml
image = yaml.safe_load(open("compose.yaml"))["services"][sys.argv[1]]["image"]
print(re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", image))
EOF
}
build() {  # build TAG CONTEXT [args...]
  local tag=$1 context=$2; shift 2
  podman build --quiet --format docker --pull=never --tag "$tag" "$@" "$context" >/dev/null
}
say "building the stand-ins for redis, postgres and minio"
MOTO_VERSION=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("moto"))')
build "$(compose_image redis)" tests/deploy/standins/redis --build-arg "BASE=$BASE"
build "$(compose_image postgres)" tests/deploy/standins/postgres --build-arg "BASE=$BASE"
build "$(compose_image minio)" tests/deploy/standins/minio --build-arg "BASE=$BASE" \
  --build-arg "MOTO_VERSION=$MOTO_VERSION" "${PIP_ARGS[@]}"

say "building docker/Dockerfile as $(compose_image api)"
build "$(compose_image api)" . --file docker/Dockerfile "${PIP_ARGS[@]}"
say "building docker/Dockerfile.gpu as $(compose_image gpu-worker) (CUDA base stood in by $BASE)"
build "$(compose_image gpu-worker)" . --file docker/Dockerfile.gpu "${PIP_ARGS[@]}"
podman image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E 'framefleet' || true

# ------------------------------------------------------------------ static checks with the real tools
say "checking every profile with podman-compose config"
bash deploy/make-secrets.sh "$WORK/secrets" >/dev/null
cp deploy/prod.env.example "$WORK/prod.env"
export DEPLOY_SECRETS_DIR=$WORK/secrets DEPLOY_ENV_FILE=$WORK/prod.env
for profiles in "dev" "prod" "prod gpu" "dev monitoring" "prod gpu monitoring"; do
  args=(); for p in $profiles; do args+=(--profile "$p"); done
  compose "${args[@]}" config > "$WORK/config.yaml" || die "podman-compose config failed for: $profiles"
  .venv/bin/python -m tests.deploy.check_config "$WORK/config.yaml" $profiles
done
say "checking config/prometheus.yml and the alert rules with promtool"
promtool check config config/prometheus.yml
promtool check rules config/alerts/*.yml
promtool test rules tests/deploy/alerts_test.yml

# ------------------------------------------------------------------ the dev profile, for real
export DEPLOY_API_PORT=${DEPLOY_API_PORT:-18000} DEPLOY_S3_PORT=${DEPLOY_S3_PORT:-19000} \
       DEPLOY_S3_CONSOLE_PORT=${DEPLOY_S3_CONSOLE_PORT:-19001} DEPLOY_FLOWER_PORT=${DEPLOY_FLOWER_PORT:-15555}
for port in "$DEPLOY_API_PORT" "$DEPLOY_S3_PORT" "$DEPLOY_FLOWER_PORT"; do
  ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || die "port $port is in use; set DEPLOY_*_PORT"
done
compose --profile dev down --volumes --timeout 5 >/dev/null 2>&1 || true
# The dev services run the mounted source with --reload. They get a snapshot of it, so that edits made to
# the work tree while the test runs cannot restart them mid-test; the test edits the snapshot itself.
mkdir -p "$WORK/src"
cp -r framefleet "$WORK/src/framefleet"
find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +
chmod -R a+rX "$WORK/src"
export DEPLOY_SOURCE=$WORK/src/framefleet

# podman runs health checks from systemd timers; without systemd this loop runs them.
(
  while sleep 3; do
    for c in $(podman ps --filter "label=io.podman.compose.project=$PROJECT" --format '{{.Names}}'); do
      podman healthcheck run "$c" >/dev/null 2>&1 || true
    done
  done
) &
HEALTH_PID=$!

wait_healthy() {  # wait_healthy TIMEOUT SERVICE...
  local deadline=$(($(date +%s) + $1)); shift
  for service in "$@"; do
    local name
    name=$(container_of "$service")
    [ -n "$name" ] || die "no container for service $service"
    until [ "$(podman inspect --format '{{.State.Health.Status}}' "$name")" = healthy ]; do
      [ "$(podman inspect --format '{{.State.Running}}' "$name")" = true ] || die "$service stopped"
      [ "$(date +%s)" -lt "$deadline" ] || die "$service is not healthy after the time allowed"
      sleep 1
    done
  done
}

container_of() {
  podman ps -a --filter "label=io.podman.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -n1
}
up() {  # up SERVICE...: create and start, in the order compose's depends_on gives (see the header)
  compose --profile dev up --detach --no-build --no-deps "$@" > "$WORK/up.log" 2>&1 \
    || { cat "$WORK/up.log"; die "podman-compose up $* failed"; }
}

say "starting redis, postgres and minio (dev profile)"
up redis postgres minio
wait_healthy 120 redis postgres minio
say "running the one-shot services s3-init and migrate"
up s3-init migrate
for service in s3-init migrate; do
  name=$(container_of "$service")
  code=$(timeout 180 podman wait "$name") || die "$service did not finish"
  podman logs "$name" 2>&1 | tail -n 2
  [ "$code" = 0 ] || die "$service exited with status $code"
done
say "starting api, worker, beat, webhooks and flower"
up api worker beat webhooks flower
wait_healthy 180 api worker beat webhooks flower

e2e() {  # e2e PYTEST_ARGS...: run tests/deploy/e2e_dev.py against the running stack and count the results
  local log=$WORK/pytest.log status
  set +e
  .venv/bin/python -m pytest -q -p no:cacheprovider -s tests/deploy/e2e_dev.py "$@" 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  set -e
  local passed failed
  passed=$(grep -oE '[0-9]+ passed' "$log" | tail -n1 | grep -oE '[0-9]+' || echo 0)
  failed=$(grep -oE '[0-9]+ (failed|error)' "$log" | tail -n1 | grep -oE '[0-9]+' || echo 0)
  [ "$status" = 0 ] || [ "$failed" != 0 ] || failed=1
  PASSED=$((PASSED + passed)); FAILED=$((FAILED + failed))
  SUMMARY="$PASSED passed, $FAILED failed"
  [ "$status" = 0 ] || die "the end-to-end test failed"
}
export DEPLOY_PROJECT=$PROJECT

say "end-to-end on SQLite: job through the published API, followed over SSE, output decoded"
e2e

# The same stack on PostgreSQL: the one variable the dev profile reads to switch databases.
say "switching the dev services to PostgreSQL (FRAMEFLEET_DATABASE_URL) and running the job again"
export FRAMEFLEET_DATABASE_URL=postgresql://framefleet:framefleet-dev@postgres:5432/framefleet
for service in migrate api worker beat webhooks flower; do podman rm --force "$(container_of "$service")" >/dev/null; done
up migrate
code=$(timeout 180 podman wait "$(container_of migrate)") || die "migrate did not finish"
podman logs "$(container_of migrate)" 2>&1 | tail -n 1
[ "$code" = 0 ] || die "migrate on PostgreSQL exited with status $code"
up api worker beat webhooks flower
wait_healthy 180 api worker beat webhooks flower
e2e -k "healthy or job_through"
say "total time $(($(date +%s) - STARTED)) s"
