"""macOS: sign radreview.app with the hardened runtime, pack it in a DMG, notarise and staple.

Everything that needs an Apple account is optional and read from the environment:
- ``MACOS_SIGNING_IDENTITY``: a "Developer ID Application: ..." identity in the keychain
  (CI imports it from ``MACOS_CERTIFICATE_P12_BASE64``); without it the app is signed ad hoc
  ("-"), which arm64 requires for any code to run at all, and notarisation is skipped;
- notarisation, only with an identity and either ``APPLE_ID`` + ``APPLE_TEAM_ID`` +
  ``APPLE_APP_PASSWORD`` (an app-specific password) or ``APPLE_API_KEY_PATH`` +
  ``APPLE_API_KEY_ID`` + ``APPLE_API_ISSUER`` (an App Store Connect API key).

Signing goes inside out (dylibs and .so files, then executables, then the bundle) rather than
with ``--deep``, which Apple discourages and which skips files outside the code folders.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

INSTALLER_DIR = Path(__file__).resolve().parent
ENTITLEMENTS = INSTALLER_DIR / "macos" / "entitlements.plist"
_MACHO_MAGIC = {b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xca\xfe\xba\xbe", b"\xfe\xed\xfa\xcf"}


def signing_identity(env: dict[str, str] | None = None) -> str:
    env = dict(os.environ if env is None else env)
    return env.get("MACOS_SIGNING_IDENTITY", "").strip() or "-"


def notary_arguments(env: dict[str, str] | None = None) -> list[str] | None:
    """Credentials for ``xcrun notarytool``, or None when there are none (skip notarisation)."""
    env = dict(os.environ if env is None else env)
    if env.get("APPLE_API_KEY_PATH") and env.get("APPLE_API_KEY_ID") and env.get("APPLE_API_ISSUER"):
        return ["--key", env["APPLE_API_KEY_PATH"], "--key-id", env["APPLE_API_KEY_ID"],
                "--issuer", env["APPLE_API_ISSUER"]]
    if env.get("APPLE_ID") and env.get("APPLE_TEAM_ID") and env.get("APPLE_APP_PASSWORD"):
        return ["--apple-id", env["APPLE_ID"], "--team-id", env["APPLE_TEAM_ID"],
                "--password", env["APPLE_APP_PASSWORD"]]
    return None


def is_macho(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(4) in _MACHO_MAGIC
    except OSError:
        return False


def code_files(app: Path) -> list[Path]:
    """Every Mach-O file in the bundle, deepest first, the main executable last."""
    main = app / "Contents" / "MacOS" / app.stem
    files = [p for p in app.rglob("*") if p.is_file() and not p.is_symlink() and p != main and is_macho(p)]
    files.sort(key=lambda p: len(p.parts), reverse=True)
    return [*files, main]


def codesign_command(path: Path, identity: str, entitlements: bool) -> list[str]:
    cmd = ["codesign", "--force", "--sign", identity, "--options", "runtime"]
    if identity != "-":
        cmd.append("--timestamp")  # a secure time stamp is required for notarisation
    if entitlements:
        cmd += ["--entitlements", str(ENTITLEMENTS)]
    return [*cmd, str(path)]


def sign_app(app: Path, identity: str) -> None:
    for path in code_files(app):
        # Entitlements matter only on executables; libraries inherit the process's.
        executable = os.access(path, os.X_OK) and path.suffix not in (".dylib", ".so")
        subprocess.run(codesign_command(path, identity, entitlements=executable), check=True)
    subprocess.run(codesign_command(app, identity, entitlements=True), check=True)
    subprocess.run(["codesign", "--verify", "--deep", "--strict", "--verbose=2", str(app)], check=True)


def make_dmg(app: Path, dmg: Path, volume_name: str) -> Path:
    """A compressed, read-only disk image with the app and an Applications link to drag onto."""
    with tempfile.TemporaryDirectory(prefix="radreview-dmg-") as staging_dir:
        staging = Path(staging_dir)
        subprocess.run(["ditto", str(app), str(staging / app.name)], check=True)  # keeps signatures
        (staging / "Applications").symlink_to("/Applications")
        dmg.unlink(missing_ok=True)
        subprocess.run(["hdiutil", "create", "-volname", volume_name, "-srcfolder", str(staging),
                        "-fs", "HFS+", "-format", "UDZO", "-ov", str(dmg)], check=True)
    return dmg


def notarise(path: Path, credentials: list[str]) -> None:
    subprocess.run(["xcrun", "notarytool", "submit", str(path), *credentials, "--wait"], check=True)
    subprocess.run(["xcrun", "stapler", "staple", str(path)], check=True)
    subprocess.run(["xcrun", "stapler", "validate", str(path)], check=True)


def package_app(app: Path, out_dir: Path, version: str) -> Path:
    """Sign the app, build the DMG, sign it, and notarise + staple it when credentials exist."""
    if shutil.which("codesign") is None or shutil.which("hdiutil") is None:
        raise FileNotFoundError("codesign and hdiutil are needed (run this on macOS)")
    identity = signing_identity()
    if identity == "-":
        print("macos: no MACOS_SIGNING_IDENTITY; signing ad hoc, skipping notarisation")
    sign_app(app, identity)
    dmg = make_dmg(app, out_dir / f"radreview-{version}-macos-arm64.dmg", f"radreview {version}")
    if identity != "-":
        subprocess.run(["codesign", "--force", "--sign", identity, "--timestamp", str(dmg)], check=True)
        credentials = notary_arguments()
        if credentials is None:
            print("macos: no notarisation credentials in the environment; the DMG is signed, not notarised")
        else:
            notarise(dmg, credentials)  # the ticket covers the app inside; stapled to the DMG
    return dmg
