"""PACS nodes and this workstation's own AE title, saved per user as ``pacs_nodes.json``.

The file sits beside the viewer's settings (:func:`radreview.settings_files.config_dir`) and is
read and written with the same functions: a missing or corrupt file gives the defaults (a corrupt
one is set aside), a node with a field of the wrong type keeps its other fields.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from radreview.settings_files import config_dir, read_settings_file, typed_fields, write_settings_file

log = logging.getLogger(__name__)

NODES_FILE = "pacs_nodes.json"
DEFAULT_LOCAL_AET = "RADREVIEW"
DEFAULT_LOCAL_PORT = 11112  # the registered DICOM port for non-privileged use


def check_ae_title(title: str) -> str:
    """The AE title, or raise ValueError: 1-16 characters, no backslash or control characters,
    not all spaces (DICOM PS3.5 AE value representation)."""
    if not title or not title.strip():
        raise ValueError("an AE title cannot be empty")
    if len(title) > 16:
        raise ValueError(f"AE title {title!r} is longer than 16 characters")
    if "\\" in title or any(ord(c) < 32 or ord(c) > 126 for c in title):
        raise ValueError(f"AE title {title!r} may hold only printable ASCII without backslashes")
    return title.strip()


def check_port(port: int) -> int:
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port {port!r} is not a TCP port (1-65535)")
    return port


@dataclass
class PacsNode:
    """A PACS (or any DICOM peer) this workstation talks to."""

    name: str = ""
    ae_title: str = ""  # the node's AE title: the "called AE" of our requests
    host: str = ""
    port: int = 104
    dicomweb_url: str = ""  # e.g. http://pacs:8042/dicom-web ("" when the site has none)

    @property
    def label(self) -> str:
        """How messages name the node: ``NAME (AET@host:port)``."""
        address = f"{self.ae_title}@{self.host}:{self.port}"
        return f"{self.name} ({address})" if self.name else address

    def validated(self) -> PacsNode:
        """This node, or ValueError saying which field is wrong."""
        where = f"PACS node {self.name!r}: " if self.name else "PACS node: "
        try:
            check_ae_title(self.ae_title)
            check_port(self.port)
            if not self.host.strip():
                raise ValueError("no host given")
            if self.dicomweb_url and not self.dicomweb_url.startswith(("http://", "https://")):
                raise ValueError(f"DICOMweb URL {self.dicomweb_url!r} must start with http:// or https://")
        except ValueError as exc:
            raise ValueError(where + str(exc)) from None
        return self


@dataclass
class LocalAE:
    """This workstation: the calling AE title, and the port of its storage SCP (C-MOVE target)."""

    ae_title: str = DEFAULT_LOCAL_AET
    port: int = DEFAULT_LOCAL_PORT


@dataclass
class PacsSettings:
    local: LocalAE = field(default_factory=LocalAE)
    nodes: list[PacsNode] = field(default_factory=list)

    def node(self, name: str) -> PacsNode:
        """The saved node called ``name`` (case-insensitive), or KeyError naming the saved ones."""
        for node in self.nodes:
            if node.name.lower() == name.lower():
                return node
        saved = ", ".join(n.name for n in self.nodes) or "none saved"
        raise KeyError(f"no PACS node named {name!r} (saved: {saved})")

    def put(self, node: PacsNode) -> None:
        """Add ``node`` or replace the saved node of the same name."""
        node.validated()
        self.nodes = [n for n in self.nodes if n.name.lower() != node.name.lower()] + [node]

    def remove(self, name: str) -> None:
        self.node(name)  # KeyError when absent
        self.nodes = [n for n in self.nodes if n.name.lower() != name.lower()]


def nodes_path() -> Path:
    return config_dir() / NODES_FILE


def settings_from_dict(data: dict[str, Any]) -> PacsSettings:
    local_data = data.get("local")
    local = LocalAE(**typed_fields(LocalAE, local_data)) if isinstance(local_data, dict) else LocalAE()
    nodes: list[PacsNode] = []
    for item in data.get("nodes") or []:
        if not isinstance(item, dict):
            log.warning("ignoring a saved PACS node that is not an object: %r", item)
            continue
        node = PacsNode(**typed_fields(PacsNode, item))
        try:
            nodes.append(node.validated())
        except ValueError as exc:
            log.warning("ignoring saved %s", exc)
    return PacsSettings(local, nodes)


def load_pacs_settings(path: Path | None = None) -> PacsSettings:
    """The saved nodes and local AE; never raises (see the module docstring)."""
    data = read_settings_file(path or nodes_path())
    return PacsSettings() if data is None else settings_from_dict(data)


def save_pacs_settings(settings: PacsSettings, path: Path | None = None) -> None:
    write_settings_file(path or nodes_path(), asdict(settings))
