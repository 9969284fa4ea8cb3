"""A throwaway Orthanc PACS for the PACS tests, and DCMTK as the independent peer.

``orthanc`` gives a running Orthanc (DIMSE + DICOMweb) emptied before each test. It is the one
named by ``RADREVIEW_TEST_ORTHANC`` (and its siblings, see scripts/start_test_orthanc.sh) when
set, else one that scripts/start_test_orthanc.sh starts for the session and stops at the end.
Without the Orthanc binaries the tests skip with the install command, except under CI (the
``CI`` environment variable set), where they fail: CI installs them (.ci/run).

Registered from conftest.py with one import. Importing this module also points the PACS cache
at a temporary folder, so that no test writes into the user's real cache.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
START_SCRIPT = REPO_ROOT / "scripts" / "start_test_orthanc.sh"
ORTHANC_INSTALL = "apt-get install orthanc orthanc-dicomweb"
DCMTK_INSTALL = "apt-get install dcmtk"
DICOMWEB_PLUGINS = (Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so"), Path("/usr/lib/orthanc/libOrthancDicomWeb.so"))
DCMTK_AET = "DCMTK"  # registered in Orthanc by the start script, for storescu/findscu

os.environ.setdefault("RADREVIEW_PACS_CACHE", tempfile.mkdtemp(prefix="radreview-test-pacs-cache-"))


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must have it: .ci/run installs it)")
    pytest.skip(reason)


@dataclass
class OrthancServer:
    """Where the test Orthanc is, and its REST API for setting up and checking."""

    aet: str
    host: str
    port: int
    http: str
    move_aet: str
    move_port: int

    @property
    def dicomweb(self) -> str:
        return f"{self.http}/dicom-web"

    def node(self, name: str = "test-orthanc", **changes):
        from radreview.pacs import PacsNode

        fields = dict(name=name, ae_title=self.aet, host=self.host, port=self.port, dicomweb_url=self.dicomweb)
        fields.update(changes)
        return PacsNode(**fields)

    def local(self):
        """This test session as Orthanc knows it: AE title and port of the C-MOVE destination."""
        from radreview.pacs import LocalAE

        return LocalAE(self.move_aet, self.move_port)

    def rest(self, path: str, method: str = "GET"):
        request = urllib.request.Request(self.http + path, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body.strip() else None

    def clear(self) -> None:
        for patient in self.rest("/patients"):
            self.rest(f"/patients/{patient}", method="DELETE")

    def instance_uids(self) -> set[str]:
        return {self.rest(f"/instances/{i}")["MainDicomTags"]["SOPInstanceUID"] for i in self.rest("/instances")}


def _from_environment() -> OrthancServer | None:
    address = os.environ.get("RADREVIEW_TEST_ORTHANC")
    if not address:
        return None
    aet, _, host_port = address.partition("@")
    host, _, port = host_port.rpartition(":")
    move_aet, _, move = os.environ.get("RADREVIEW_TEST_ORTHANC_MOVE", "RRTEST@127.0.0.1:0").partition("@")
    http = os.environ.get("RADREVIEW_TEST_ORTHANC_HTTP", "")
    if not (aet and host and port.isdigit() and http):
        pytest.fail(f"RADREVIEW_TEST_ORTHANC={address!r} (with _HTTP and _MOVE) is not what "
                    f"scripts/start_test_orthanc.sh prints")
    return OrthancServer(aet, host, int(port), http, move_aet, int(move.rpartition(":")[2] or 0))


def _exports(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export "):].partition("=")
            values[key] = value
    return values


def _running(pid: int) -> bool:
    """Whether the process runs (the started Orthanc is not our child: once it exits it may stay a
    zombie until its new parent reaps it, and a zombie no longer runs)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state not in ("Z", "X")


@pytest.fixture(scope="session")
def orthanc_server():
    server = _from_environment()
    if server is not None:
        yield server
        return
    if shutil.which("Orthanc") is None or not any(p.exists() for p in DICOMWEB_PLUGINS):
        _unavailable(f"Orthanc with its DICOMweb plugin is not installed ({ORTHANC_INSTALL})")
    started = subprocess.run(["bash", str(START_SCRIPT)], capture_output=True, text=True, timeout=120)
    if started.returncode != 0:
        pytest.fail(f"scripts/start_test_orthanc.sh failed: {started.stderr.strip()}")
    values = _exports(started.stdout)
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield _from_environment()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        pid = int(values.get("RADREVIEW_TEST_ORTHANC_PID", "0") or 0)
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            for _ in range(200):  # up to 10 s for Orthanc to close its database
                if not _running(pid):
                    break
                time.sleep(0.05)
        folder = values.get("RADREVIEW_TEST_ORTHANC_DIR", "")
        if folder.startswith(tempfile.gettempdir()):
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def orthanc(orthanc_server: OrthancServer) -> OrthancServer:
    """The test Orthanc, emptied: each test starts with no studies."""
    orthanc_server.clear()
    return orthanc_server


@pytest.fixture(scope="session")
def dcmtk():
    """Return the path of a DCMTK tool (storescu, findscu, dsrdump, ...), skipping without DCMTK."""

    def tool(name: str) -> str:
        path = shutil.which(name)
        if path is None:
            _unavailable(f"DCMTK's {name} is not installed ({DCMTK_INSTALL})")
        return path

    return tool
