#!/usr/bin/env bash
# Best effort, never fatal: the real peers the test suite starts or calls itself — PostgreSQL's
# server programs (tests/_postgres.py), Orthanc with its DICOMweb plugin (tests/_orthanc.py) and
# DCMTK (reference renderer and DICOM peer). As root on a system with apt-get they are installed;
# otherwise this says how and exits 0 (the tests then skip with the same advice, or fail under CI).
set -u
here=$(dirname "$0")
log() { echo "install_test_servers: $*" >&2; }

"$here/install_test_postgres.sh" || true

packages=()
command -v dcmj2pnm >/dev/null 2>&1 || packages+=(dcmtk)
command -v Orthanc >/dev/null 2>&1 || packages+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || packages+=(orthanc-dicomweb)
[ ${#packages[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  log "installing ${packages[*]} with apt-get for the PACS and reference-renderer tests"
  # Keep the orthanc package's system service from starting (a policy file only where none is).
  policy=/usr/sbin/policy-rc.d; made_policy=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; made_policy=1; fi
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null) >&2 \
    || log "apt-get could not install ${packages[*]}; their tests will skip"
  [ "$made_policy" = 1 ] && rm -f "$policy"
  exit 0
fi
log "not found: ${packages[*]}; their tests will skip."
log "  Debian/Ubuntu: sudo apt-get install ${packages[*]}"
exit 0
