#!/usr/bin/env bash
# Start a throwaway Orthanc PACS (DIMSE + DICOMweb) for the PACS tests and print, on stdout only,
#   export RADREVIEW_TEST_ORTHANC=ORTHANC@127.0.0.1:<dicom port>
#   export RADREVIEW_TEST_ORTHANC_HTTP=http://127.0.0.1:<http port>
#   export RADREVIEW_TEST_ORTHANC_MOVE=RRTEST@127.0.0.1:<port of the test's own storage SCP>
#   export RADREVIEW_TEST_ORTHANC_PID=<pid>   export RADREVIEW_TEST_ORTHANC_DIR=<folder>
# so that callers can `eval "$(scripts/start_test_orthanc.sh)"`. Everything else goes to stderr.
# Stop it with `kill $RADREVIEW_TEST_ORTHANC_PID` and remove $RADREVIEW_TEST_ORTHANC_DIR.
#
# The storage lives in a temporary folder; the DICOMweb plugin is on (under /dicom-web/). Orthanc
# checks the called AE title (a wrong one is rejected) and serves C-FIND/C-GET/C-MOVE/C-STORE only
# to the AE titles registered below, from 127.0.0.1: RRTEST (radreview in the tests; also the
# C-MOVE destination, on the port printed above) and DCMTK (storescu/findscu, the independent
# peer). Any other C-MOVE destination is unknown to it. Orthanc 1.10 has no bind-address option:
# it listens on every interface, refuses HTTP from anything but localhost and DICOM from any
# host but 127.0.0.1.
set -euo pipefail

log() { echo "start_test_orthanc: $*" >&2; }

PLUGIN_DIRS=(/usr/share/orthanc/plugins /usr/lib/orthanc)

find_plugin() {
  local d
  for d in "${PLUGIN_DIRS[@]}"; do
    if [ -e "$d/libOrthancDicomWeb.so" ]; then echo "$d/libOrthancDicomWeb.so"; return 0; fi
  done
  return 1
}

if ! command -v Orthanc >/dev/null 2>&1 || ! find_plugin >/dev/null; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    log "installing orthanc and orthanc-dicomweb with apt-get"
    # The packages' post-install scripts try to start the system service: keep it stopped
    # (only a temporary policy file, and only where the system has none of its own).
    POLICY=/usr/sbin/policy-rc.d
    MADE_POLICY=0
    if [ ! -e "$POLICY" ]; then printf '#!/bin/sh\nexit 101\n' >"$POLICY"; chmod 755 "$POLICY"; MADE_POLICY=1; fi
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb >/dev/null) >&2 || true
    [ "$MADE_POLICY" = 1 ] && rm -f "$POLICY"
  fi
fi
if ! command -v Orthanc >/dev/null 2>&1; then
  log "Orthanc not found and could not be installed (apt-get install orthanc orthanc-dicomweb)"
  exit 1
fi
PLUGIN=$(find_plugin || true)
if [ -z "$PLUGIN" ]; then
  log "the Orthanc DICOMweb plugin was not found (apt-get install orthanc-dicomweb)"
  exit 1
fi

free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
sockets = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    sockets.append(s)
print(" ".join(str(s.getsockname()[1]) for s in sockets))
for s in sockets:
    s.close()
PY
}
read -r DICOM_PORT HTTP_PORT MOVE_PORT <<<"$(free_ports 3)"

ROOT=$(mktemp -d /tmp/radreview-orthanc.XXXXXX)
mkdir -p "$ROOT/db"
cat >"$ROOT/orthanc.json" <<JSON
{
  "Name": "radreview-test",
  "StorageDirectory": "$ROOT/db",
  "IndexDirectory": "$ROOT/db",
  "Plugins": ["$PLUGIN"],
  "HttpServerEnabled": true,
  "HttpPort": $HTTP_PORT,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "HttpThreadsCount": 8,
  "DicomServerEnabled": true,
  "DicomAet": "ORTHANC",
  "DicomPort": $DICOM_PORT,
  "DicomCheckCalledAet": true,
  "DicomCheckModalityHost": true,
  "DicomAlwaysAllowEcho": true,
  "DicomAlwaysAllowStore": false,
  "DicomAlwaysAllowFind": false,
  "DicomAlwaysAllowGet": false,
  "DicomAlwaysAllowMove": false,
  "DicomModalities": {
    "radreview": ["RRTEST", "127.0.0.1", $MOVE_PORT],
    "dcmtk": ["DCMTK", "127.0.0.1", 1]
  },
  "DicomAssociationCloseDelay": 0,
  "DicomScuTimeout": 10,
  "DicomScpTimeout": 30,
  "DicomThreadsCount": 4,
  "UnknownSopClassAccepted": false,
  "StorageCompression": false,
  "OverwriteInstances": false,
  "SaveJobs": false,
  "StableAge": 1,
  "DicomWeb": {"Enable": true, "Root": "/dicom-web/", "EnableWado": true, "Host": "127.0.0.1:$HTTP_PORT", "Ssl": false}
}
JSON

Orthanc "$ROOT/orthanc.json" --logdir="$ROOT" >/dev/null 2>&1 &
PID=$!
for _ in $(seq 1 100); do
  if ! kill -0 "$PID" 2>/dev/null; then
    log "Orthanc exited while starting; its log is in $ROOT"
    exit 1
  fi
  if python3 - "$HTTP_PORT" <<'PY' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/dicom-web/studies", timeout=1).read()
PY
  then
    log "Orthanc (pid $PID) on 127.0.0.1: DICOM $DICOM_PORT, HTTP $HTTP_PORT; storage and log in $ROOT"
    log "stop with: kill $PID && rm -rf $ROOT"
    echo "export RADREVIEW_TEST_ORTHANC=ORTHANC@127.0.0.1:$DICOM_PORT"
    echo "export RADREVIEW_TEST_ORTHANC_HTTP=http://127.0.0.1:$HTTP_PORT"
    echo "export RADREVIEW_TEST_ORTHANC_MOVE=RRTEST@127.0.0.1:$MOVE_PORT"
    echo "export RADREVIEW_TEST_ORTHANC_PID=$PID"
    echo "export RADREVIEW_TEST_ORTHANC_DIR=$ROOT"
    exit 0
  fi
  sleep 0.1
done
log "Orthanc did not answer on HTTP port $HTTP_PORT within 10 s; its log is in $ROOT"
kill "$PID" 2>/dev/null || true
exit 1
