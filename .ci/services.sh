# PostgreSQL and Redis for the test suite (sourced by .ci/run): installed when missing,
# started when down, waited for, then made required. The store conformance suite and the
# multi-node tests skip with a message when a server is unreachable; OTPD_REQUIRE_STORES=1
# turns that into a failure here (issue 5).
#
# Ports and URLs: the local servers' defaults (PostgreSQL 127.0.0.1:5432 with user
# postgres and database `test`, Redis 127.0.0.1:6379); OTPD_CI_REDIS_PORT moves the
# Redis this script starts (tries of this script itself).

echo "== services: PostgreSQL and Redis"
ci_redis_port="${OTPD_CI_REDIS_PORT:-6379}"

# Fresh machine: the Debian packages (the postgresql package creates and starts the
# `main` cluster of its version).
ci_missing=()
command -v pg_ctlcluster >/dev/null || ci_missing+=(postgresql)
command -v redis-server >/dev/null || ci_missing+=(redis-server)
if [ ${#ci_missing[@]} -gt 0 ]; then
  echo "installing ${ci_missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${ci_missing[@]}" >/dev/null
fi

ci_wait_for() { # ci_wait_for NAME SECONDS COMMAND...: until COMMAND succeeds, or fail
  local name=$1 limit=$2 i
  shift 2
  for ((i = 0; i < limit * 2; i++)); do
    if "$@" >/dev/null 2>&1; then
      echo "$name is up"
      return 0
    fi
    sleep 0.5
  done
  echo "$name did not answer within ${limit} s" >&2
  return 1
}

ci_pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432; }
ci_redis_ready() { [ "$(redis-cli -h 127.0.0.1 -p "$ci_redis_port" ping 2>/dev/null)" = PONG ]; }

if ! ci_pg_ready; then
  ci_pg_version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "starting PostgreSQL $ci_pg_version"
  pg_ctlcluster --skip-systemctl-redirect "$ci_pg_version" main start
fi
ci_wait_for PostgreSQL 60 ci_pg_ready
# The database the tests connect to (each test then makes and drops its own).
# (Over the Unix socket, where Debian lets the postgres user in.)
ci_test_db=$(runuser -u postgres -- psql -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'")
if [ "$ci_test_db" != 1 ]; then
  runuser -u postgres -- createdb test
fi
# The tests connect as postgres over TCP without a password (this machine's servers trust
# loopback; a freshly installed Debian cluster asks for one): let this CI box's loopback
# connections of `postgres` in, then reload.
if ! psql "postgresql://postgres@127.0.0.1:5432/test" -tAc 'SELECT 1' >/dev/null 2>&1; then
  ci_hba=$(runuser -u postgres -- psql -tAc 'SHOW hba_file')
  echo "trusting postgres@loopback in $ci_hba (CI only)"
  { printf 'host all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust\n'; cat "$ci_hba"; } > "$ci_hba.ci"
  cat "$ci_hba.ci" > "$ci_hba" && rm -f "$ci_hba.ci"
  runuser -u postgres -- psql -tAc 'SELECT pg_reload_conf()' >/dev/null
fi
if ! psql "postgresql://postgres@127.0.0.1:5432/test" -tAc 'SELECT 1' >/dev/null; then
  echo "PostgreSQL refuses postgres@127.0.0.1 without a password (pg_hba.conf)" >&2
  exit 1
fi

if ! ci_redis_ready; then
  echo "starting Redis on port $ci_redis_port"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$ci_redis_port" \
    --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
ci_wait_for Redis 30 ci_redis_ready

export OTPD_REQUIRE_STORES=1
