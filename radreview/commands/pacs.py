"""``radreview pacs echo|find|get|move|send|listen|node``: talk to a PACS (DIMSE, or DICOMweb).

The node is ``--node NAME`` (saved with ``radreview pacs node add``) or ``--host --port
--called-aet``; ``--aet`` is our own AE title (default: the saved one, RADREVIEW). Retrieved
studies go into ``--out DIR`` or the local cache (one folder per study). ``--dicomweb [URL]``
makes find/get/send use QIDO-RS/WADO-RS/STOW-RS (URL default: the node's saved one).
``find --out FILE.csv`` writes one row per match, with DICOM keyword columns; patient data
appears only in what the command prints or writes, never in the log.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ACTIONS = ("echo", "find", "get", "move", "send", "listen", "node")
TABLE_COLUMNS = {
    "PATIENT": ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "NumberOfPatientRelatedStudies"),
    "STUDY": ("StudyDate", "PatientID", "PatientName", "ModalitiesInStudy", "AccessionNumber",
              "NumberOfStudyRelatedInstances", "StudyDescription", "StudyInstanceUID"),
    "SERIES": ("SeriesNumber", "Modality", "SeriesDescription", "NumberOfSeriesRelatedInstances", "SeriesInstanceUID"),
    "IMAGE": ("InstanceNumber", "SOPClassUID", "SOPInstanceUID"),
}


def _node_arguments(parser: argparse.ArgumentParser, web: bool = False) -> None:
    group = parser.add_argument_group("the PACS node")
    group.add_argument("--node", metavar="NAME", help="a saved node (radreview pacs node list)")
    group.add_argument("--host", help="the node's host name or address")
    group.add_argument("--port", type=int, help="the node's DICOM port (default 104)")
    group.add_argument("--called-aet", metavar="AET", help="the node's AE title")
    group.add_argument("--aet", metavar="AET", help="our AE title (default: the saved one, RADREVIEW)")
    group.add_argument("--timeout", type=float, help="seconds to wait for the node (default 10 to connect, "
                                                     "30 to associate, 120 per answer)")
    if web:
        group.add_argument("--dicomweb", nargs="?", const="", metavar="URL",
                           help="use DICOMweb instead of DIMSE (URL default: the node's saved DICOMweb URL)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    echo = actions.add_parser("echo", help="C-ECHO: is the node there and does it accept us?")
    _node_arguments(echo)

    find = actions.add_parser("find", help="C-FIND (or QIDO-RS): list patients, studies, series or images")
    _node_arguments(find, web=True)
    find.add_argument("--level", default="study", choices=("patient", "study", "series", "image"))
    find.add_argument("--patient-id", default="", help="patient ID (wildcards * and ? allowed)")
    find.add_argument("--patient-name", default="", help="patient name, e.g. 'DOE^J*'")
    find.add_argument("--date", default="", help="study date YYYYMMDD or range YYYYMMDD-YYYYMMDD")
    find.add_argument("--modality", default="", help="e.g. CR, DX")
    find.add_argument("--accession", default="", help="accession number")
    find.add_argument("--study-uid", default="", help="study UID (needed for series and image level)")
    find.add_argument("--series-uid", default="", help="series UID (needed for image level)")
    find.add_argument("--limit", type=int, default=0, help="stop after this many matches")
    find.add_argument("--out", metavar="FILE.csv", help="also write the matches as CSV (DICOM keyword columns)")

    for name, text in (("get", "C-GET (or WADO-RS) studies into the cache or --out DIR"),
                       ("move", "C-MOVE studies to our own storage SCP, filed into the cache or --out DIR")):
        sub = actions.add_parser(name, help=text)
        _node_arguments(sub, web=name == "get")
        sub.add_argument("--study-uid", action="append", required=True, metavar="UID", help="repeatable")
        sub.add_argument("--out", metavar="DIR", help="folder to file into (default: the local cache)")
        if name == "move":
            sub.add_argument("--listen-port", type=int, help="port of our storage SCP (default: the saved one, 11112); "
                                                             "the PACS must know it for our AE title")
            sub.add_argument("--destination", metavar="AET", help="move to this AE title instead of ours")

    send = actions.add_parser("send", help="C-STORE (or STOW-RS) DICOM files or folders to the node")
    _node_arguments(send, web=True)
    send.add_argument("paths", nargs="*", metavar="PATH")  # at least one (checked in _send: see there)

    listen = actions.add_parser("listen", help="run a storage SCP filing what arrives into the cache (Ctrl+C stops)")
    listen.add_argument("--aet", metavar="AET", help="our AE title (default: the saved one)")
    listen.add_argument("--port", type=int, help="port to listen on (default: the saved one, 11112)")
    listen.add_argument("--bind", default="", metavar="ADDRESS", help="address to listen on (default: all)")
    listen.add_argument("--out", metavar="DIR", help="folder to file into (default: the local cache)")
    listen.add_argument("--count", type=int, default=0, help="stop after this many objects (default: run until Ctrl+C)")

    node = actions.add_parser("node", help="saved PACS nodes: list, add, remove, set-local")
    node_actions = node.add_subparsers(dest="node_action", metavar="WHAT", required=True)
    node_actions.add_parser("list", help="list the saved nodes and our own AE title")
    add = node_actions.add_parser("add", help="save (or replace) a node")
    add.add_argument("name")
    add.add_argument("--host", required=True)
    add.add_argument("--port", type=int, default=104)
    add.add_argument("--called-aet", required=True, metavar="AET", help="the node's AE title")
    add.add_argument("--dicomweb", default="", metavar="URL", help="its DICOMweb service root, if any")
    remove = node_actions.add_parser("remove", help="forget a saved node")
    remove.add_argument("name")
    local = node_actions.add_parser("set-local", help="our AE title and storage SCP port")
    local.add_argument("--aet", required=True)
    local.add_argument("--port", type=int, required=True)


class UsageError(Exception):
    pass


_progress_line_open = False  # a "\r 3/10 instances" line without its newline yet


def _progress(text: str) -> None:
    global _progress_line_open
    print(f"\r  {text}", end="", file=sys.stderr, flush=True)
    _progress_line_open = True


def _end_progress() -> None:
    """Close an open progress line, so that what follows starts on its own line."""
    global _progress_line_open
    if _progress_line_open:
        print(file=sys.stderr)
        _progress_line_open = False


def _say(text: str) -> None:
    _end_progress()  # an error after progress starts on its own line
    print(f"radreview pacs: {text}", file=sys.stderr)


def _resolve(args: argparse.Namespace):
    """(node, local AE) from --node or --host/--port/--called-aet, and --aet."""
    from radreview.pacs import LocalAE, PacsNode, load_pacs_settings
    from radreview.pacs.nodes import check_ae_title

    settings = load_pacs_settings()
    if args.node:
        try:
            node = settings.node(args.node)
        except KeyError as exc:
            raise UsageError(exc.args[0]) from None
        node = PacsNode(node.name, args.called_aet or node.ae_title, args.host or node.host, args.port or node.port,
                        node.dicomweb_url)
    elif args.host or getattr(args, "dicomweb", None):
        node = PacsNode("", args.called_aet or "", args.host or "", args.port or 104)
    else:
        raise UsageError("name the node: --node NAME, or --host HOST --port PORT --called-aet AET")
    local = LocalAE(args.aet or settings.local.ae_title, getattr(args, "listen_port", None) or settings.local.port)
    try:
        check_ae_title(local.ae_title)
        if getattr(args, "dicomweb", None) is None:
            node.validated()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return node, local


def _web_client(args: argparse.Namespace, node):
    from radreview.pacs.dicomweb import DicomWebClient

    url = args.dicomweb or node.dicomweb_url
    if not url:
        raise UsageError(f"--dicomweb: no URL given and {node.label} has no saved DICOMweb URL")
    try:
        return DicomWebClient(url, timeout=args.timeout or 60.0, name=node.name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from radreview.pacs import PacsError

    try:
        return {"echo": _echo, "find": _find, "get": _retrieve, "move": _retrieve, "send": _send,
                "listen": _listen, "node": _nodes}[args.action](args)
    except UsageError as exc:
        _say(str(exc))
        return 2
    except PacsError as exc:
        _say(str(exc))
        return 1


def _echo(args: argparse.Namespace) -> int:
    from radreview.pacs.echo import echo

    node, local = _resolve(args)
    seconds = echo(node, local.ae_title, args.timeout)
    print(f"{node.label}: C-ECHO answered in {seconds * 1000:.0f} ms (we are {local.ae_title})")
    return 0


def _find(args: argparse.Namespace) -> int:
    from radreview.pacs.find import RETURN_KEYS, Query, find

    node, local = _resolve(args)
    level = args.level.upper()
    try:
        query = Query(args.patient_id, args.patient_name, args.date, args.modality, args.accession, args.study_uid,
                      args.series_uid)
    except ValueError as exc:
        raise UsageError(f"--date: {exc}") from None
    try:
        if args.dicomweb is not None:
            rows = _web_client(args, node).search(level, query, args.limit)
        else:
            rows = find(node, level, query, local.ae_title, args.timeout, limit=args.limit)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _print_table(rows, TABLE_COLUMNS[level])
    print(f"{len(rows)} match{'es' if len(rows) != 1 else ''} at {args.level} level", file=sys.stderr)
    if args.out:
        try:
            path = Path(args.out)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", newline="", encoding="utf-8") as handle:
                from radreview.csv_safety import SafeDictWriter

                # the PACS's text is not ours: a description "=HYPERLINK(...)" must not run in a spreadsheet
                writer = SafeDictWriter(handle, fieldnames=list(RETURN_KEYS[level]))
                writer.writeheader()
                writer.writerows(rows)
        except OSError as exc:
            raise UsageError(f"cannot write {args.out}: {exc.strerror or exc}") from None
        print(f"wrote {args.out} (it holds patient data)", file=sys.stderr)
    return 0


def _print_table(rows: list[dict[str, str]], columns: tuple[str, ...]) -> None:
    widths = {c: min(40, max([len(c)] + [len(r.get(c, "")) for r in rows])) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c, "")
            cells.append((value if len(value) <= widths[c] else value[: widths[c] - 1] + "…").ljust(widths[c]))
        print("  ".join(cells).rstrip())


def _retrieve(args: argparse.Namespace) -> int:
    from radreview.pacs.cache import cache_root
    from radreview.pacs.retrieve import retrieve_study

    node, local = _resolve(args)
    root = Path(args.out) if args.out else cache_root()
    web = _web_client(args, node) if getattr(args, "dicomweb", None) is not None else None
    status = 0
    for uid in args.study_uid:
        def progress(done: int, total: int) -> None:
            _progress(f"{done}/{total} instances")

        try:
            if web is not None:
                from radreview.pacs.dicomweb import retrieve_study_web

                result = retrieve_study_web(web, uid, root, progress=progress)
            else:
                result = retrieve_study(node, uid, args.action, root, local, progress=progress, timeout=args.timeout,
                                        destination=getattr(args, "destination", None) or "")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        _end_progress()
        print(result.summary())
        for reason in result.refused:
            _say(f"not filed: {reason}")
        for obj in result.not_viewable:
            _say(f"filed but not viewable (no image: {obj.sop_class_uid and _class_name(obj.sop_class_uid)}): {obj.path.name}")
        if result.complete:
            print(f"  in {result.folder}")
        else:
            print(f"  in {result.folder} (marked incomplete; run the same command again to fetch the rest)")
            status = 1
    return status


def _class_name(uid: str) -> str:
    from pydicom.uid import UID

    return UID(uid).name


def _send(args: argparse.Namespace) -> int:
    from radreview.pacs.send import dicom_files, send

    if args.dicomweb and not args.dicomweb.startswith(("http://", "https://")):
        # "send --dicomweb a.dcm": --dicomweb's optional URL took the first path; give it back
        args.paths, args.dicomweb = [args.dicomweb, *args.paths], ""
    if not args.paths:
        raise UsageError("send: give at least one PATH (a DICOM file or folder)")
    node, local = _resolve(args)
    files = dicom_files(args.paths)
    missing = [p for p in files if not p.exists()]
    if missing:
        raise UsageError(f"{missing[0]}: no such file or folder")

    def progress(done: int, total: int) -> None:
        _progress(f"{done}/{total} sent")

    if args.dicomweb is not None:
        client = _web_client(args, node)
        result = client.store(files, progress=progress)
        where = client.label
    else:
        result = send(node, files, local.ae_title, progress=progress, timeout=args.timeout)
        where = node.label
    _end_progress()
    for what, why in result.failed:
        _say(f"{what}: {why}")
    for what, why in result.warnings:
        _say(f"{what}: stored with a warning: {why}")
    print(f"sent {len(result.sent)} of {len(result.sent) + len(result.failed)} to {where}")
    return 0 if not result.failed else 1


def _listen(args: argparse.Namespace) -> int:
    import threading

    from radreview.pacs import load_pacs_settings
    from radreview.pacs.cache import cache_root
    from radreview.pacs.listen import StorageListener

    settings = load_pacs_settings()
    root = Path(args.out) if args.out else cache_root()
    done = threading.Event()
    count = 0
    lock = threading.Lock()

    def stored(obj) -> None:
        nonlocal count
        note = "" if obj.viewable else " (not an image: filed, not viewable)"
        note += " (already cached: kept)" if obj.already_cached else ""
        print(f"filed {obj.path.parent.name[-12:]}/{obj.path.name}{note}", flush=True)
        with lock:
            count += 1
            if args.count and count >= args.count:
                done.set()

    listener = StorageListener(args.aet or settings.local.ae_title, args.port or settings.local.port, args.bind,
                               root, on_stored=stored, on_refused=lambda reason: _say(f"refused: {reason}"))
    listener.start()
    print(f"storage SCP {listener.ae_title} on port {listener.port}, filing into {root} (Ctrl+C stops)", flush=True)
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        listener.stop()
    print(f"{count} object(s) filed", file=sys.stderr)
    return 0


def _nodes(args: argparse.Namespace) -> int:
    from radreview.pacs import LocalAE, PacsNode, load_pacs_settings, save_pacs_settings
    from radreview.pacs.nodes import check_ae_title, check_port, nodes_path

    settings = load_pacs_settings()
    if args.node_action == "list":
        print(f"this workstation: AE title {settings.local.ae_title}, storage SCP port {settings.local.port}")
        for node in settings.nodes:
            print(f"{node.name}: {node.ae_title}@{node.host}:{node.port}"
                  + (f"  DICOMweb {node.dicomweb_url}" if node.dicomweb_url else ""))
        if not settings.nodes:
            print("no saved nodes (radreview pacs node add NAME --host H --port P --called-aet AET)")
        return 0
    try:
        if args.node_action == "add":
            settings.put(PacsNode(args.name, args.called_aet, args.host, args.port, args.dicomweb))
        elif args.node_action == "remove":
            settings.remove(args.name)
        else:
            settings.local = LocalAE(check_ae_title(args.aet), check_port(args.port))
    except (ValueError, KeyError) as exc:
        raise UsageError(exc.args[0]) from None
    save_pacs_settings(settings)
    print(f"saved in {nodes_path()}")
    return 0
