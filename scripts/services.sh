#!/usr/bin/env bash
# Make sure the servers the tests use answer, starting any that do not.
# The commands are those this machine's services are started with.
set -uo pipefail

wait_for() {  # wait_for NAME COMMAND...
  local name=$1; shift
  for _ in $(seq 1 30); do
    if "$@" >/dev/null 2>&1; then echo "services: $name is up"; return 0; fi
    sleep 1
  done
  echo "services: $name did not come up" >&2
  return 1
}

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
wait_for PostgreSQL pg_isready -q -h 127.0.0.1 -p 5432 || exit 1

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
wait_for Redis redis-cli -h 127.0.0.1 -p 6379 ping || exit 1

# tests/test_tls.py makes its certificates with openssl (Debian's PostgreSQL
# packages depend on it, so this normally finds it) and runs redis-server with
# --tls-port (Debian builds it with TLS).
if ! command -v openssl >/dev/null 2>&1; then
  echo "services: installing openssl"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null && apt-get install -y -q openssl >/dev/null || exit 1
fi
