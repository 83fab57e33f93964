#!/bin/sh
# Installs the system packages the tests need when they are missing (Debian/Ubuntu):
# PostgreSQL server binaries (the mirror tests start their own cluster), iproute2, Node.js,
# Chromium and its driver (the faucet page test drives a headless browser);
# for the Docker tests: Docker's engine (docker.io), Compose (the `docker compose` plugin or
# Debian's docker-compose), Prometheus (promtool and the server for the alert test) and
# debootstrap; then starts dockerd if none answers and makes the debian:bookworm-slim base
# image from Debian's packages if it is missing (no image registry is needed).
# With the argument `bench`, also wrk (the read-latency load generator of `make bench`).
# Idempotent: when everything is there it only looks, in well under a second.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
need=""
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then need="$need postgresql"; fi
command -v ip >/dev/null 2>&1 || need="$need iproute2"
command -v node >/dev/null 2>&1 || need="$need nodejs npm"
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  need="$need chromium chromium-driver"
fi
if [ "${1:-}" = "bench" ]; then command -v wrk >/dev/null 2>&1 || need="$need wrk"; fi

# Docker: the engine, a compose, and a CLI that builds with BuildKit (buildx, or the classic
# CLI of Docker < 23 that docker.io ships as /usr/bin/docker)
docker_need=""
command -v dockerd >/dev/null 2>&1 || docker_need="$docker_need docker.io"
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
  docker_need="$docker_need docker-compose"
fi
command -v promtool >/dev/null 2>&1 || docker_need="$docker_need prometheus"
command -v debootstrap >/dev/null 2>&1 || docker_need="$docker_need debootstrap"

if [ "$(id -u)" -ne 0 ]; then
  if [ -n "$need" ]; then
    echo "missing system packages:$need — install them (sudo apt-get install$need)" >&2
    exit 1
  fi
  if [ -n "$docker_need" ]; then
    echo "note: the Docker tests are skipped without$docker_need (sudo apt-get install$docker_need)" >&2
  fi
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if [ -n "$need$docker_need" ]; then
  echo "installing system packages:$need$docker_need"
  apt-get update -qq
  if [ -n "$need" ]; then
    # shellcheck disable=SC2086
    apt-get install -y -qq $need >/dev/null
  fi
  if [ -n "$docker_need" ]; then
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $docker_need >/dev/null
  fi
fi

# a Docker engine that answers: start dockerd when none does (CI machines start without one)
if ! docker info >/dev/null 2>&1; then
  echo "starting dockerd (log: /var/log/cairn-dockerd.log)"
  setsid dockerd >/var/log/cairn-dockerd.log 2>&1 </dev/null &
  i=0
  until docker info >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -gt 60 ]; then
      echo "dockerd did not answer within 60 s:" >&2
      tail -n 20 /var/log/cairn-dockerd.log >&2
      exit 1
    fi
    sleep 1
  done
fi

# the base image of the Dockerfile, made from Debian's packages when no registry has it
if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
  "$here/../deploy/docker/make-base-image.sh" debian:bookworm-slim
fi
