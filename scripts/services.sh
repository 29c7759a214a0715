#!/usr/bin/env bash
# Start PostgreSQL and Redis on loopback for the tests that need them (shared store, shared crawl frontier).
# Idempotent; installs the Debian packages when missing (needs root). Tests that need a server skip with a
# reason when it is not reachable, so `make test` still passes on a machine where this was not run.
#   scripts/services.sh          # start both
#   scripts/services.sh stop     # stop both
set -u
PG_URL_USER=kadn
PG_DB=kadn

cluster() { pg_lsclusters -h 2>/dev/null | awk 'NR==1 {print $1, $2}'; }

if [ "${1:-start}" = stop ]; then
  redis-cli -h 127.0.0.1 -p 6379 shutdown nosave >/dev/null 2>&1
  read -r ver name <<<"$(cluster)"; [ -n "${ver:-}" ] && pg_ctlcluster "$ver" "$name" stop
  exit 0
fi

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v pg_lsclusters >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  echo "services: installing ${need[*]}"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; } >/dev/null 2>&1 \
    || echo "services: could not install ${need[*]}; the tests that need them will skip"
fi

if command -v redis-server >/dev/null 2>&1; then
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 \
    || redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save '' --appendonly no >/dev/null
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && echo "services: redis on 127.0.0.1:6379"
fi

if command -v pg_lsclusters >/dev/null 2>&1; then
  read -r ver name <<<"$(cluster)"
  if [ -z "${ver:-}" ]; then
    ver=$(ls /usr/lib/postgresql | sort -n | tail -1); name=main
    pg_createcluster "$ver" "$name" >/dev/null
  fi
  pg_ctlcluster "$ver" "$name" start 2>/dev/null || true
  for _ in $(seq 1 20); do pg_isready -h 127.0.0.1 -q && break; sleep 0.5; done
  su postgres -c "psql -qtAc \"select 1 from pg_roles where rolname='$PG_URL_USER'\"" | grep -q 1 \
    || su postgres -c "psql -qc \"create role $PG_URL_USER login superuser password '$PG_URL_USER'\""
  su postgres -c "psql -qtAc \"select 1 from pg_database where datname='$PG_DB'\"" | grep -q 1 \
    || su postgres -c "createdb -O $PG_URL_USER $PG_DB"
  pg_isready -h 127.0.0.1 -q && echo "services: postgresql $ver on 127.0.0.1:5432 (user/db $PG_URL_USER)"
fi
exit 0
