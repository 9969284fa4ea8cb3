#!/usr/bin/env bash
# Best effort, never fatal: PostgreSQL's server programs (initdb, pg_ctl) for the multi-workstation
# reader-study tests, which start a throwaway server from them (tests/_postgres.py). As root on a
# system with apt-get they are installed, as .ci/run always did; otherwise this says how and exits 0
# (the tests then skip with the same advice, or fail when CI is set).
set -u

log() { echo "install_test_postgres: $*" >&2; }
have_postgres() {
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1
}

if have_postgres; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  log "installing PostgreSQL with apt-get for the multi-workstation tests"
  if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) >&2; then
    exit 0
  fi
  log "apt-get could not install postgresql; the PostgreSQL tests will skip"
  exit 0
fi
log "PostgreSQL (initdb) not found; the PostgreSQL tests will skip."
log "  Debian/Ubuntu: sudo apt-get install postgresql   Fedora: sudo dnf install postgresql-server"
exit 0
