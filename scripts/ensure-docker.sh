#!/usr/bin/env bash
# Make sure a Docker engine answers and is a one-node Swarm manager on 127.0.0.1.
# Idempotent, safe to run concurrently (one flock), reuses an engine someone else started.
# On a fresh Debian bookworm machine (as root): installs Debian's docker.io and debootstrap,
# starts dockerd in the background (log and pidfile below) and runs `docker swarm init`.
#
# Environment: DOCKERD_LOG (default /var/log/dockerd.log), DOCKERD_PIDFILE
# (default /var/run/docker.pid), DOCKER_WAIT (seconds, default 60),
# SWARM_ADVERTISE_ADDR (default 127.0.0.1).
set -euo pipefail

DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
DOCKERD_PIDFILE=${DOCKERD_PIDFILE:-/var/run/docker.pid}
DOCKER_WAIT=${DOCKER_WAIT:-60}
SWARM_ADVERTISE_ADDR=${SWARM_ADVERTISE_ADDR:-127.0.0.1}
LOCK=${ENSURE_DOCKER_LOCK:-/tmp/vault-entrypoint-ensure-docker.lock}

say() { echo "ensure-docker: $*" >&2; }
die() {
    say "$*"
    exit 1
}

# Concurrent callers (two engineers, two test runs) wait for each other instead of racing
# on apt, on dockerd's pidfile or on `swarm init`.
exec 9>"$LOCK"
if ! flock -w 600 9; then die "another ensure-docker run holds $LOCK for more than 600 s"; fi

engine_answers() { docker info >/dev/null 2>&1; }

pidfile_alive() {
    [ -s "$DOCKERD_PIDFILE" ] && kill -0 "$(cat "$DOCKERD_PIDFILE")" 2>/dev/null
}

wait_for_engine() {
    local deadline=$((SECONDS + DOCKER_WAIT))
    until engine_answers; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "the Docker engine did not answer within ${DOCKER_WAIT}s; last lines of $DOCKERD_LOG:"
            tail -n 30 "$DOCKERD_LOG" >&2 2>/dev/null || true
            exit 1
        fi
        sleep 0.5
    done
}

apt_install() {
    [ "$(id -u)" -eq 0 ] || die "need root to install Debian packages: $*"
    say "installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# 1. Packages. Debian's dockerd lives in /usr/sbin; a client may already be elsewhere on PATH.
missing=()
if ! command -v dockerd >/dev/null && [ ! -x /usr/sbin/dockerd ] && ! engine_answers; then
    missing+=(docker.io)
fi
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
PATH=$PATH:/usr/sbin:/sbin
command -v docker >/dev/null || die "no docker client on PATH"

# 2. The engine: reuse one that answers (or is starting: its pidfile names a live process).
if engine_answers; then
    say "engine already answers: $(docker version --format '{{.Server.Version}}' 2>/dev/null)"
elif pidfile_alive; then
    say "dockerd (pid $(cat "$DOCKERD_PIDFILE")) is starting; waiting up to ${DOCKER_WAIT}s"
    wait_for_engine
else
    [ "$(id -u)" -eq 0 ] || die "no Docker engine answers and only root can start dockerd"
    mkdir -p "$(dirname "$DOCKERD_LOG")"
    say "starting dockerd (log $DOCKERD_LOG, pidfile $DOCKERD_PIDFILE)"
    # setsid + nohup: dockerd outlives this script and the caller's terminal or job.
    # 9>&-: the lock must not be inherited, or dockerd would hold it for its whole life.
    # DOCKER_SERVICE_PREFER_OFFLINE_IMAGE: Swarm tasks use a local image as it is instead of
    # trying a registry first (none is reachable here; images are built locally).
    DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=${DOCKER_SERVICE_PREFER_OFFLINE_IMAGE:-1} \
        setsid nohup dockerd --pidfile "$DOCKERD_PIDFILE" >>"$DOCKERD_LOG" 2>&1 </dev/null 9>&- &
    wait_for_engine
    say "engine up: $(docker version --format '{{.Server.Version}}')"
fi

# 3. The Swarm.
state=$(docker info --format '{{.Swarm.LocalNodeState}}')
case "$state" in
    active) say "swarm already active" ;;
    inactive)
        say "docker swarm init --advertise-addr $SWARM_ADVERTISE_ADDR"
        docker swarm init --advertise-addr "$SWARM_ADVERTISE_ADDR" >/dev/null
        ;;
    *) die "this node's swarm state is '$state'; fix it by hand (docker swarm leave / unlock)" ;;
esac
[ "$(docker info --format '{{.Swarm.ControlAvailable}}')" = "true" ] ||
    die "this node is in a swarm but is not a manager"
say "ready: engine $(docker version --format '{{.Server.Version}}'), swarm manager"
