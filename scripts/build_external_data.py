#!/usr/bin/env python3
"""Rebuild radreview's external (non-FracAtlas) radiograph sets under /work/data/<name>/.

Every set is read from a bare git mirror of a public GitHub repository, at a pinned commit,
with ``git ls-tree`` / ``git cat-file`` (the same objects ``git show COMMIT:path`` prints).
Nothing is downloaded by this script and nothing is written inside the repository.

Mirrors (each one was brought onto the machine with the session tool
``fetch github:OWNER/NAME``; it lands in ``<mirror-root>/OWNER+NAME/repo``):

=====================  ==========================================  ==========================================
dataset                mirror (fetch github:...)                   commit read
=====================  ==========================================  ==========================================
knee_oa_chen2018       Rohan-145/KneeOA_Analysis                   614e752c1b6e13469ec1a278f5dd2bebbecd68fb
kermany_chest_peds     lecuong1502/BTL_Machine_Learning            19a2d6171e2b9678617eba9ad207ef416196d08f
ddh_fraiwan_radoss     radoss-org/radoss-creative-commons          185aed296005617d13bc959b9e2853749c524586
=====================  ==========================================  ==========================================

Licences and provenance of each set are in docs/data_sources.md (original owners' statements,
not the re-uploaders').  In short: all three are CC BY 4.0 by their original owners
(Chen 2018 Mendeley doi:10.17632/56rmx5bjcr.1; Kermany et al. 2018 Mendeley
doi:10.17632/rscbjbr9sj.2; Fraiwan et al. 2022 Mendeley doi:10.17632/jf3pv98m9g.2).

What is written per dataset, in ``<out>/<name>/``:

* ``images/...``      images, longer side <= 1024 px.  Sources that already fit are copied
                      byte-for-byte; larger ones are downscaled (PNG stays PNG, lossless and at
                      its bit depth; JPEG sources are re-encoded as JPEG quality 92).
* ``manifest.csv``    path (relative to the dataset folder), source_repo, source_commit,
                      source_path, licence, source_sha256, width, height, then label columns.
* ``fracatlas_overlap.json``  the FracAtlas overlap check (see below) and any rows it dropped.

FracAtlas overlap check (``--fracatlas``, default ../shared/data/fracatlas relative to the repo
root): FracAtlas must never come back in through another copy, because part of it is held back
for independent evaluation.  Each candidate image is compared with all images under
``<fracatlas>/images``:

1. sha256 of the source bytes and of the written bytes against the sha256 of every FracAtlas file;
2. perceptual: 16x16 grey thumbnails (box-filtered, 0..255), of the plain and of the
   histogram-equalised image, mean absolute difference (the smaller of the two, also against the
   mirrored candidate); a pair with MAD < ``MAD_THRESHOLD`` counts as a match;
3. a 64-bit dHash (9x8 grey), Hamming distance <= ``DHASH_THRESHOLD`` (also mirrored) together
   with a thumbnail MAD < ``REVIEW_MAD`` (dHash alone collides between unrelated radiographs).

Pairs with MAD < ``REVIEW_MAD`` that are not matches are listed under "review" for a person to
look at.  Positive control (200 FracAtlas images re-encoded at JPEG q70, mirrored, downscaled
3x, cropped 3 % a side or contrast-stretched): 196 matched, 4 in review, none missed.

Matching images are dropped from the manifest (their files removed) and listed in
``fracatlas_overlap.json``; a dataset in which more than ``MAX_MATCH_FRACTION`` of the images
match is dropped whole.  The smallest distances seen are logged so a near-miss can be looked at.

Usage (from the repository root)::

    .venv/bin/python scripts/build_external_data.py --mirror-root /work/.mirror --out /work/data \
        [--only NAME] [--fracatlas ../shared/data/fracatlas]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import random
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image, ImageFile, ImageOps

# 47 FracAtlas JPEGs end a few bytes short; decode them anyway (reading only).
ImageFile.LOAD_TRUNCATED_IMAGES = True

MAX_SIDE = 1024
JPEG_QUALITY = 92
MAD_THRESHOLD = 6.0  # on 0..255 grey levels, 16x16 thumbnails
DHASH_THRESHOLD = 4  # bits out of 64
MAX_MATCH_FRACTION = 0.01
# Looser "review" tier: not dropped automatically, listed in fracatlas_overlap.json so a person
# looks at the pair (a crop of a few percent moves the thumbnail MAD to about 7-11; unrelated
# radiographs seen so far sit above 12).
REVIEW_MAD = 12.0

CC_BY_4 = "CC BY 4.0"


# --------------------------------------------------------------------------- git access


class Mirror:
    """Read-only access to one bare mirror at one commit."""

    def __init__(self, mirror_root: Path, repo: str, commit: str):
        self.repo = repo
        self.commit = commit
        base = mirror_root / repo.replace("/", "+")
        git_dir = base / "repo"
        if (git_dir / ".git").is_dir():
            git_dir = git_dir / ".git"
        if not git_dir.is_dir():
            raise SystemExit(
                f"mirror for {repo} not found at {git_dir}; bring it with the session tool "
                f"`fetch github:{repo}`"
            )
        self.git_dir = git_dir
        full = self._git("rev-parse", "--verify", f"{commit}^{{commit}}").strip()
        self.commit = full
        self._cat = None

    def _git(self, *args: str) -> str:
        return subprocess.run(
            ["git", f"--git-dir={self.git_dir}", *args], check=True, capture_output=True
        ).stdout.decode("utf-8", "surrogateescape")

    def ls_tree(self) -> list[tuple[str, str]]:
        """(blob sha, path) for every blob at the commit."""
        out = subprocess.run(
            ["git", f"--git-dir={self.git_dir}", "ls-tree", "-r", "-z", self.commit],
            check=True,
            capture_output=True,
        ).stdout
        rows = []
        for rec in out.split(b"\0"):
            if not rec:
                continue
            meta, path = rec.split(b"\t", 1)
            mode, kind, sha = meta.split()
            if kind == b"blob":
                rows.append((sha.decode(), path.decode("utf-8", "surrogateescape")))
        return rows

    def read(self, path: str) -> bytes:
        """Bytes of ``COMMIT:path`` (what `git show COMMIT:path` prints), via one cat-file --batch."""
        if self._cat is None:
            self._cat = subprocess.Popen(
                ["git", f"--git-dir={self.git_dir}", "cat-file", "--batch"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        assert self._cat.stdin and self._cat.stdout
        self._cat.stdin.write(f"{self.commit}:{path}\n".encode("utf-8", "surrogateescape"))
        self._cat.stdin.flush()
        header = self._cat.stdout.readline().decode()
        parts = header.split()
        if len(parts) != 3 or parts[1] != "blob":
            raise KeyError(f"{self.repo}@{self.commit[:10]}:{path}: {header.strip()}")
        size = int(parts[2])
        data = self._cat.stdout.read(size)
        self._cat.stdout.read(1)  # trailing LF
        return data

    def close(self) -> None:
        if self._cat is not None:
            self._cat.stdin.close()  # type: ignore[union-attr]
            self._cat.wait()
            self._cat = None


# --------------------------------------------------------------------------- dataset specs


@dataclass
class Item:
    source_path: str
    out_stem: str  # relative path under images/, without extension
    labels: dict


@dataclass
class Spec:
    name: str
    repo: str
    commit: str
    licence: str
    label_columns: list[str]
    select: Callable[[Mirror], list[Item]]
    notes: str = ""
    extra: dict = field(default_factory=dict)


def _knee_oa(m: Mirror) -> list[Item]:
    """Chen 2018 KL-graded knee-joint crops (224x224), original patient-level split."""
    items = []
    pat = re.compile(r"^(train|val|test)/([0-4])/(\d{7})([LR])\.png$")
    for _sha, path in sorted(m.ls_tree(), key=lambda r: r[1]):
        mt = pat.match(path)
        if not mt:
            continue
        split, kl, pid, side = mt.groups()
        kl = int(kl)
        items.append(
            Item(
                path,
                f"{split}/{kl}/{pid}{side}",
                dict(
                    region="leg",
                    body_part="knee",
                    crop="knee_joint_224",
                    view="PA",
                    side=side,
                    kl_grade=kl,
                    abnormal=int(kl >= 2),
                    hardware="",  # not annotated
                    fracture="",  # not annotated
                    split_hint=split,
                    group=pid,
                ),
            )
        )
    return items


def _kermany(m: Mirror, per_class: int = 500, seed: int = 20240611) -> list[Item]:
    """Kermany paediatric chest radiographs, from the mirror's train/ only.

    The mirror's test/ and val/ folders hold 224 px re-saves of train/ images (same file names),
    so they are never read.  One image per patient, ``per_class`` per class, chosen with a fixed
    seed; byte-identical duplicates are skipped.
    """
    rows = [(s, p) for s, p in m.ls_tree() if re.match(r"^train/(NORMAL|PNEUMONIA)/.+\.jpe?g$", p)]
    by_class: dict[str, dict[str, list[tuple[str, str]]]] = defaultdict(lambda: defaultdict(list))
    seen_blobs = set()
    for sha, path in sorted(rows, key=lambda r: r[1]):
        if sha in seen_blobs:
            continue
        seen_blobs.add(sha)
        cls, fname = path.split("/")[1:3]
        if cls == "PNEUMONIA":
            mt = re.match(r"^person(\d+)_(bacteria|virus)_", fname)
            group = f"P{mt.group(1)}" if mt else fname
        else:
            mt = re.match(r"^(NORMAL2-)?IM-(\d+)-", fname)
            group = f"{'N2' if mt and mt.group(1) else 'N'}-{mt.group(2)}" if mt else fname
        by_class[cls][group].append((sha, path))
    rng = random.Random(seed)
    items = []
    for cls in ("NORMAL", "PNEUMONIA"):
        groups = sorted(by_class[cls])
        rng.shuffle(groups)
        for group in groups[:per_class]:
            _sha, path = sorted(by_class[cls][group], key=lambda r: r[1])[0]
            fname = path.split("/")[-1]
            subtype = "normal"
            if cls == "PNEUMONIA":
                subtype = "bacteria" if "_bacteria_" in fname else "virus"
            items.append(
                Item(
                    path,
                    f"{cls.lower()}/{Path(fname).stem}",
                    dict(
                        region="chest",
                        in_scope=0,
                        pneumonia=int(cls == "PNEUMONIA"),
                        subtype=subtype,
                        paediatric=1,
                        split_hint="scope_test",
                        group=group,
                    ),
                )
            )
    return items


def _ddh(m: Mirror) -> list[Item]:
    """Fraiwan et al. DDH pelvis radiographs: the 10 unprocessed JPEGs radoss re-hosts."""
    items = []
    tree = {p for _s, p in m.ls_tree()}
    for path in sorted(tree):
        mt = re.match(r"^other/xray/(331_DDH_(\d+))\.jpg$", path)
        if not mt:
            continue
        stem, num = mt.groups()
        lab = f"labels/xray/{stem}.json"
        items.append(
            Item(
                path,
                stem,
                dict(
                    region="hip",
                    body_part="pelvis",
                    view="AP",
                    paediatric=1,
                    ddh=1,  # file names come from the original 'DDH' folder
                    abnormal=1,
                    hardware=0,
                    fracture="",
                    landmarks_json=lab if lab in tree else "",
                    split_hint="external_test",
                    group=stem,
                ),
            )
        )
    return items


SPECS: dict[str, Spec] = {
    s.name: s
    for s in [
        Spec(
            "knee_oa_chen2018",
            "Rohan-145/KneeOA_Analysis",
            "614e752c1b6e13469ec1a278f5dd2bebbecd68fb",
            CC_BY_4 + " (Chen 2018, Mendeley Data doi:10.17632/56rmx5bjcr.1; images from OAI)",
            ["region", "body_part", "crop", "view", "side", "kl_grade", "abnormal", "hardware",
             "fracture", "split_hint", "group"],
            _knee_oa,
        ),
        Spec(
            "kermany_chest_peds",
            "lecuong1502/BTL_Machine_Learning",
            "19a2d6171e2b9678617eba9ad207ef416196d08f",
            CC_BY_4 + " (Kermany, Zhang, Goldbaum 2018, Mendeley Data doi:10.17632/rscbjbr9sj.2)",
            ["region", "in_scope", "pneumonia", "subtype", "paediatric", "split_hint", "group"],
            _kermany,
        ),
        Spec(
            "ddh_fraiwan_radoss",
            "radoss-org/radoss-creative-commons",
            "185aed296005617d13bc959b9e2853749c524586",
            CC_BY_4 + " (Fraiwan et al. 2022, Mendeley Data doi:10.17632/jf3pv98m9g.2)",
            ["region", "body_part", "view", "paediatric", "ddh", "abnormal", "hardware",
             "fracture", "landmarks_json", "split_hint", "group"],
            _ddh,
        ),
    ]
}


# --------------------------------------------------------------------------- images


def grey_image(im: Image.Image, exif: bool = True) -> Image.Image:
    g = ImageOps.exif_transpose(im) if exif else im
    if g.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(g, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo + 1e-9) * 255.0
        g = Image.fromarray(a.astype(np.uint8), "L")
    else:
        g = g.convert("L")
    return g


def fingerprints(im: Image.Image, exif: bool = True) -> tuple[np.ndarray, int, int]:
    """(2x16x16 float32 thumbnails: plain and histogram-equalised; dHash; mirrored dHash)."""
    g = grey_image(im, exif)
    thumb = np.stack([
        np.asarray(g.resize((16, 16), Image.Resampling.BOX), dtype=np.float32),
        # histogram-equalised first: robust to windowing, contrast stretch, equalisation/CLAHE
        np.asarray(ImageOps.equalize(g).resize((16, 16), Image.Resampling.BOX), dtype=np.float32),
    ])
    d = np.asarray(g.resize((9, 8), Image.Resampling.BOX), dtype=np.int16)
    bits = (d[:, 1:] > d[:, :-1]).flatten()
    dm = d[:, ::-1]
    bits_m = (dm[:, 1:] > dm[:, :-1]).flatten()
    to_int = lambda b: int("".join("1" if x else "0" for x in b), 2)  # noqa: E731
    return thumb, to_int(bits), to_int(bits_m)


def downscale(data: bytes, source_path: str) -> tuple[bytes, str, int, int]:
    """(bytes to write, extension, width, height) with the longer side <= MAX_SIDE."""
    im = Image.open(io.BytesIO(data))
    fmt = (im.format or "").upper()
    w, h = im.size
    ext = ".png" if fmt == "PNG" else ".jpg" if fmt in ("JPEG", "MPO") else ".png"
    if max(w, h) <= MAX_SIDE and fmt in ("PNG", "JPEG"):
        return data, ext, w, h
    scale = MAX_SIDE / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    im.load()
    if im.mode == "P":
        im = im.convert("RGB")
    out = io.BytesIO()
    if ext == ".png":
        if im.mode.startswith("I;16"):
            a = np.asarray(im, dtype=np.uint16)
            im = Image.fromarray(a.astype(np.int32), "I")
        im = im.resize((nw, nh), Image.Resampling.LANCZOS)
        if im.mode == "I":
            a = np.clip(np.asarray(im), 0, 65535).astype(np.uint16)
            im = Image.fromarray(a, "I;16")
        im.save(out, "PNG", optimize=True)
    else:
        if im.mode not in ("L", "RGB"):
            im = im.convert("RGB")
        im = im.resize((nw, nh), Image.Resampling.LANCZOS)
        im.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue(), ext, nw, nh


# --------------------------------------------------------------------------- FracAtlas reference


def fracatlas_reference(fracatlas: Path, cache: Path) -> dict:
    files = sorted(p for p in (fracatlas / "images").rglob("*") if p.is_file())
    if not files:
        raise SystemExit(f"no FracAtlas images under {fracatlas / 'images'}")
    key = hashlib.sha256(("v3\n" + "\n".join(f"{p.name}:{p.stat().st_size}" for p in files)).encode()).hexdigest()
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        if str(z["key"]) == key:
            return dict(shas=set(z["shas"].tolist()), thumbs=z["thumbs"], dh=z["dh"],
                        names=z["names"].tolist(), n=len(files))
    shas, thumbs, dh, names = [], [], [], []
    for p in files:
        b = p.read_bytes()
        shas.append(hashlib.sha256(b).hexdigest())
        # Both the EXIF-rotated view and the raw pixel order: a re-upload may have lost the tag.
        for transpose in (True, False):
            t, d, _dm = fingerprints(Image.open(io.BytesIO(b)), exif=transpose)
            if not transpose and np.array_equal(t, thumbs[-1]):  # no EXIF rotation
                continue
            thumbs.append(t)
            dh.append(d)
            names.append(str(p.relative_to(fracatlas)))
    thumbs_a = np.stack(thumbs).reshape(len(thumbs), -1)
    dh_a = np.array(dh, dtype=np.uint64)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, key=key, shas=np.array(shas), thumbs=thumbs_a, dh=dh_a, names=np.array(names))
    return dict(shas=set(shas), thumbs=thumbs_a, dh=dh_a, names=names, n=len(files))


def popcount64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64)
    c = np.zeros(x.shape, dtype=np.int64)
    for shift in range(0, 64, 8):
        c += _POP8[((x >> np.uint64(shift)) & np.uint64(0xFF)).astype(np.int64)]
    return c


_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


def overlap_check(ref: dict, cand: list[dict]) -> tuple[list[dict], dict]:
    """Mark each candidate dict (keys sha_src, sha_out, thumb, dh, dhm) with its nearest FracAtlas."""
    ref_t = ref["thumbs"].astype(np.float32).reshape(len(ref["names"]), 2, 256)
    ref_dh = ref["dh"]
    matches = []
    min_mad_all, min_ham_all = np.inf, 64
    for start in range(0, len(cand), 64):
        chunk = cand[start : start + 64]
        mad = np.full((len(chunk), len(ref_t)), np.inf, dtype=np.float32)
        for kind in (0, 1):  # plain, equalised
            t = np.stack([c["thumb"][kind].reshape(-1) for c in chunk]).astype(np.float32)
            tm = np.stack([c["thumb"][kind][:, ::-1].reshape(-1) for c in chunk]).astype(np.float32)
            r = ref_t[:, kind, :]
            mad = np.minimum(mad, np.abs(t[:, None, :] - r[None, :, :]).mean(-1))
            mad = np.minimum(mad, np.abs(tm[:, None, :] - r[None, :, :]).mean(-1))
        dh = np.array([c["dh"] for c in chunk], dtype=np.uint64)
        dhm = np.array([c["dhm"] for c in chunk], dtype=np.uint64)
        ham = np.minimum(popcount64(dh[:, None] ^ ref_dh[None, :]), popcount64(dhm[:, None] ^ ref_dh[None, :]))
        for i, c in enumerate(chunk):
            j_mad = int(mad[i].argmin())
            j_ham = int(ham[i].argmin())
            c["nearest_mad"] = float(mad[i, j_mad])
            c["nearest_mad_ref"] = ref["names"][j_mad]
            c["nearest_ham"] = int(ham[i, j_ham])
            c["nearest_ham_ref"] = ref["names"][j_ham]
            why = []
            if c["sha_src"] in ref["shas"] or c["sha_out"] in ref["shas"]:
                why.append("sha256")
            if c["nearest_mad"] < MAD_THRESHOLD:
                why.append(f"thumb_mad={c['nearest_mad']:.2f}~{c['nearest_mad_ref']}")
            # dHash alone collides between unrelated low-texture radiographs (seen: distance 2-4
            # for knee crops vs FracAtlas hands at thumbnail MAD > 40), so it counts only when
            # the thumbnails are also close.
            j = int(np.argmin(np.where(ham[i] <= DHASH_THRESHOLD, mad[i], np.inf)))
            if ham[i, j] <= DHASH_THRESHOLD and mad[i, j] < REVIEW_MAD:
                why.append(f"dhash={int(ham[i, j])},mad={mad[i, j]:.2f}~{ref['names'][j]}")
            c["match"] = why
            c["review"] = (not why) and c["nearest_mad"] < REVIEW_MAD
            if why:
                matches.append(c)
            min_mad_all = min(min_mad_all, c["nearest_mad"])
            min_ham_all = min(min_ham_all, c["nearest_ham"])
    mads = np.array([c["nearest_mad"] for c in cand]) if cand else np.array([np.nan])
    hams = np.array([c["nearest_ham"] for c in cand]) if cand else np.array([np.nan])
    summary = dict(
        fracatlas_images=ref["n"],
        candidates=len(cand),
        matched=len(matches),
        review=[dict(path=c["row"]["path"], nearest_mad=round(c["nearest_mad"], 2),
                     nearest_mad_ref=c["nearest_mad_ref"], nearest_dhash=c["nearest_ham"],
                     nearest_dhash_ref=c["nearest_ham_ref"]) for c in cand if c.get("review")],
        sha256_matches=sum("sha256" in m["match"] for m in matches),
        thresholds=dict(thumb_mad_lt=MAD_THRESHOLD, dhash_le=DHASH_THRESHOLD, mirrored_too=True,
                        dhash_needs_mad_lt=REVIEW_MAD, review_mad_lt=REVIEW_MAD),
        nearest_thumb_mad=dict(min=float(np.nanmin(mads)), p01=float(np.nanpercentile(mads, 1)),
                               median=float(np.nanmedian(mads))),
        nearest_dhash=dict(min=int(np.nanmin(hams)), p01=float(np.nanpercentile(hams, 1)),
                           median=float(np.nanmedian(hams))),
    )
    return matches, summary


# --------------------------------------------------------------------------- build


def build(spec: Spec, mirror_root: Path, out_root: Path, ref: dict) -> dict:
    m = Mirror(mirror_root, spec.repo, spec.commit)
    try:
        items = spec.select(m)
        if not items:
            raise SystemExit(f"{spec.name}: nothing selected at {spec.repo}@{m.commit}")
        dest = out_root / spec.name
        tmp = out_root / f".{spec.name}.partial"
        if tmp.exists():
            shutil.rmtree(tmp)
        (tmp / "images").mkdir(parents=True)
        rows, cand = [], []
        for n, it in enumerate(items, 1):
            data = m.read(it.source_path)
            out_bytes, ext, w, h = downscale(data, it.source_path)
            rel = f"images/{it.out_stem}{ext}"
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(out_bytes)
            thumb, dh, dhm = fingerprints(Image.open(io.BytesIO(out_bytes)))
            sha_src = hashlib.sha256(data).hexdigest()
            row = dict(path=rel, source_repo=spec.repo, source_commit=m.commit,
                       source_path=it.source_path, licence=spec.licence, source_sha256=sha_src,
                       width=w, height=h, **it.labels)
            rows.append(row)
            cand.append(dict(row=row, sha_src=sha_src, sha_out=hashlib.sha256(out_bytes).hexdigest(),
                             thumb=thumb, dh=dh, dhm=dhm))
            if n % 1000 == 0:
                print(f"  {spec.name}: {n}/{len(items)}", file=sys.stderr)
    finally:
        m.close()

    matches, summary = overlap_check(ref, cand)
    dropped_whole = len(matches) > MAX_MATCH_FRACTION * len(cand)
    report = dict(dataset=spec.name, source_repo=spec.repo, source_commit=m.commit, **summary,
                  dropped_whole_dataset=dropped_whole,
                  matched_rows=[dict(path=c["row"]["path"], source_path=c["row"]["source_path"],
                                     why=c["match"]) for c in matches])
    if dropped_whole:
        shutil.rmtree(tmp)
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        (dest / "fracatlas_overlap.json").write_text(json.dumps(report, indent=2))
        print(f"{spec.name}: DROPPED, {len(matches)}/{len(cand)} images match FracAtlas", file=sys.stderr)
        return report
    drop = {c["row"]["path"] for c in matches}
    for rel in drop:
        (tmp / rel).unlink()
    rows = [r for r in rows if r["path"] not in drop]
    cols = ["path", "source_repo", "source_commit", "source_path", "licence", "source_sha256",
            "width", "height", *spec.label_columns]
    with open(tmp / "manifest.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=cols)
        wr.writeheader()
        wr.writerows(rows)
    (tmp / "fracatlas_overlap.json").write_text(json.dumps(report, indent=2))
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    report["kept"] = len(rows)
    return report


def write_external_region_set(out: Path) -> Path | None:
    """external/regions_knee_ddh.csv: the knee test split (leg) and the DDH pelvis films (hip) as
    one labelled set that ``radreview evaluate --split all`` reads (path,leg,hip,group)."""
    knee, ddh = out / "knee_oa_chen2018" / "manifest.csv", out / "ddh_fraiwan_radoss" / "manifest.csv"
    if not knee.is_file() or not ddh.is_file():
        return None
    rows = [{"path": f"../knee_oa_chen2018/{r['path']}", "leg": 1, "hip": 0, "group": f"knee{r['group']}"}
            for r in csv.DictReader(open(knee, newline="", encoding="utf-8")) if r["split_hint"] == "test"]
    rows += [{"path": f"../ddh_fraiwan_radoss/{r['path']}", "leg": 0, "hip": 1, "group": f"ddh{r['path']}"}
             for r in csv.DictReader(open(ddh, newline="", encoding="utf-8"))]
    target = out / "external" / "regions_knee_ddh.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "leg", "hip", "group"])
        writer.writeheader()
        writer.writerows(rows)
    return target


def main(argv: Iterable[str] | None = None) -> int:
    repo_root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mirror-root", type=Path, default=Path("/work/.mirror"))
    ap.add_argument("--out", type=Path, default=Path("/work/data"))
    ap.add_argument("--only", action="append", choices=sorted(SPECS), help="build only this set (repeatable)")
    ap.add_argument("--fracatlas", type=Path, default=repo_root / ".." / "shared" / "data" / "fracatlas")
    args = ap.parse_args(list(argv) if argv is not None else None)

    out = args.out.resolve()
    if out == repo_root or repo_root in out.parents:
        raise SystemExit("--out must be outside the repository (data is never committed)")
    out.mkdir(parents=True, exist_ok=True)
    ref = fracatlas_reference(args.fracatlas.resolve(), out / ".cache" / "fracatlas_fingerprints.npz")
    print(f"FracAtlas reference: {ref['n']} images", file=sys.stderr)
    for name in args.only or list(SPECS):
        rep = build(SPECS[name], args.mirror_root, out, ref)
        print(json.dumps({k: v for k, v in rep.items() if k != "matched_rows"}))
    external = write_external_region_set(out)
    if external:
        print(f"external region set: {external}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
