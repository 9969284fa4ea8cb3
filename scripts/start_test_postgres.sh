#!/usr/bin/env bash
# Start a throwaway PostgreSQL server and print, on stdout only,
#   export RADREVIEW_TEST_POSTGRES_URL=postgresql+psycopg://...
# so that callers can `eval "$(scripts/start_test_postgres.sh)"`. Everything else goes to stderr.
# The server runs as a non-root user on a temporary directory, listening on 127.0.0.1 and a free
# port; stop it with `pg_ctl -D <dir> stop` (the directory is printed on stderr).
# `make test` needs none of this: the suite starts its own server (tests/_postgres.py). This is for
# pointing the tests, or a reader study being tried out, at one long-lived server.
set -euo pipefail

log() { echo "start_test_postgres: $*" >&2; }

find_bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return 0; fi
  return 1
}

BINDIR=$(find_bindir || true)
if [ -z "$BINDIR" ]; then
  "$(dirname "$0")/install_test_postgres.sh"  # as root with apt-get; otherwise it says how
  BINDIR=$(find_bindir || true)
fi
if [ -z "$BINDIR" ]; then
  log "PostgreSQL (initdb) not found and could not be installed"
  exit 1
fi

# PostgreSQL refuses to run as root: use a dedicated unprivileged account.
RUN_AS=()
if [ "$(id -u)" = 0 ]; then
  PGUSER_OS=postgres
  if ! id "$PGUSER_OS" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$PGUSER_OS" >&2
  fi
  RUN_AS=(runuser -u "$PGUSER_OS" --)
fi

DATA_ROOT=$(mktemp -d /tmp/radreview-pg.XXXXXX)
chmod 755 "$DATA_ROOT"
[ "$(id -u)" = 0 ] && chown "$PGUSER_OS" "$DATA_ROOT"

PORT=$(python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
)

"${RUN_AS[@]}" "$BINDIR/initdb" -D "$DATA_ROOT/data" -U radreview -A trust --no-sync >&2
# fsync off: a throwaway server for tests, durability across OS crashes is irrelevant here.
"${RUN_AS[@]}" "$BINDIR/pg_ctl" -D "$DATA_ROOT/data" -l "$DATA_ROOT/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DATA_ROOT -c fsync=off -c max_connections=100" start >&2
"${RUN_AS[@]}" "$BINDIR/createdb" -h 127.0.0.1 -p "$PORT" -U radreview radreview_test >&2

log "server data in $DATA_ROOT/data (stop with: ${RUN_AS[*]} $BINDIR/pg_ctl -D $DATA_ROOT/data stop)"
echo "export RADREVIEW_TEST_POSTGRES_URL=postgresql+psycopg://radreview@127.0.0.1:$PORT/radreview_test"
