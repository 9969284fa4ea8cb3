"""Windows: Authenticode signing (when a certificate is configured) and the Inno Setup installer.

Signing happens only when the environment provides a certificate, so that forks and local
builds produce unsigned but otherwise identical installers:
- ``WINDOWS_CERTIFICATE_PFX``: path to a .pfx file, or ``WINDOWS_CERTIFICATE_PFX_BASE64``: its
  content in base64 (how CI secrets carry it);
- ``WINDOWS_CERTIFICATE_PASSWORD``: the .pfx password;
- ``WINDOWS_TIMESTAMP_URL`` (optional): RFC 3161 time-stamp server.

Needs Inno Setup 6 (``iscc``; ``choco install innosetup`` on CI) and, for signing, ``signtool``
from the Windows SDK. ``VC_REDIST`` may point at ``vc_redist.x64.exe`` to bundle it.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

INSTALLER_DIR = Path(__file__).resolve().parent
ISS_SCRIPT = INSTALLER_DIR / "windows" / "radreview.iss"
DEFAULT_TIMESTAMP_URL = "http://timestamp.digicert.com"


@dataclass(frozen=True)
class SigningConfig:
    pfx: Path
    password: str
    timestamp_url: str

    def signtool_arguments(self) -> list[str]:
        return ["sign", "/fd", "SHA256", "/td", "SHA256", "/tr", self.timestamp_url,
                "/f", str(self.pfx), "/p", self.password, "/d", "radreview"]


def signing_config(env: dict[str, str] | None = None, scratch: Path | None = None) -> SigningConfig | None:
    """The certificate from the environment, or None when there is none (build unsigned)."""
    env = dict(os.environ if env is None else env)
    password = env.get("WINDOWS_CERTIFICATE_PASSWORD", "")
    pfx_path = env.get("WINDOWS_CERTIFICATE_PFX", "")
    encoded = env.get("WINDOWS_CERTIFICATE_PFX_BASE64", "")
    if not pfx_path and encoded:
        scratch = scratch or Path(tempfile.mkdtemp(prefix="radreview-sign-"))
        pfx = scratch / "codesign.pfx"
        pfx.write_bytes(base64.b64decode(encoded))
        pfx_path = str(pfx)
    if not pfx_path:
        return None
    return SigningConfig(Path(pfx_path), password, env.get("WINDOWS_TIMESTAMP_URL") or DEFAULT_TIMESTAMP_URL)


def find_tool(name: str, candidates: list[str]) -> str:
    found = shutil.which(name)
    if found:
        return found
    for pattern in candidates:
        matches = sorted(Path("C:/").glob(pattern))
        if matches:
            return str(matches[-1])  # the newest SDK sorts last
    raise FileNotFoundError(f"{name} not found (install it or put it on PATH)")


def signtool() -> str:
    return find_tool("signtool", ["Program Files (x86)/Windows Kits/10/bin/*/x64/signtool.exe"])


def iscc() -> str:
    return find_tool("iscc", ["Program Files (x86)/Inno Setup 6/ISCC.exe", "Program Files/Inno Setup 6/ISCC.exe"])


def sign(paths: list[Path], config: SigningConfig) -> None:
    """Sign and time-stamp files with signtool, then verify the signatures."""
    tool = signtool()
    subprocess.run([tool, *config.signtool_arguments(), *map(str, paths)], check=True)
    subprocess.run([tool, "verify", "/pa", *map(str, paths)], check=True)


def numeric_version(version: str) -> str:
    """"0.1.0.dev3+gabc" -> "0.1.0": Windows version resources take numbers only."""
    numbers = []
    for part in version.split("+")[0].split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit()) if part[:1].isdigit() else ""
        if not digits:
            break
        numbers.append(digits)
    return ".".join((numbers + ["0", "0", "0"])[:3])


def iscc_arguments(app_dir: Path, out_dir: Path, version: str, icon: Path, redist: Path | None,
                   config: SigningConfig | None) -> list[str]:
    """Command-line defines for radreview.iss (see its header)."""
    args = [f"/DAppVersion={version}", f"/DNumericVersion={numeric_version(version)}", f"/DSourceDir={app_dir}", f"/DOutputDir={out_dir}", f"/DIconFile={icon}"]
    if redist is not None:
        args.append(f"/DRedistFile={redist}")
    if config is not None:
        # Inno Setup substitutes $f with the file to sign; $q is a quote.
        sign_cmd = " ".join(f"$q{a}$q" if " " in a else a for a in config.signtool_arguments())
        args += ["/DSign", f"/Ssigntool=$q{signtool()}$q {sign_cmd} $f"]
    return [*args, str(ISS_SCRIPT)]


def build_installer(app_dir: Path, out_dir: Path, version: str) -> Path:
    """Sign the app's executables (if configured) and compile the setup program."""
    config = signing_config()
    if config is None:
        print("windows: no code-signing certificate in the environment; building unsigned")
    else:
        executables = sorted(app_dir.glob("*.exe"))
        sign(executables, config)
    redist = Path(os.environ["VC_REDIST"]) if os.environ.get("VC_REDIST") else None
    if redist is not None and not redist.is_file():
        raise FileNotFoundError(f"VC_REDIST={redist}: file not found")
    icon = INSTALLER_DIR.parent / "build" / "installer" / "icons" / "radreview.ico"
    subprocess.run([iscc(), *iscc_arguments(app_dir, out_dir, version, icon, redist, config)], check=True)
    setup = out_dir / f"radreview-{version}-windows-x64-setup.exe"
    if not setup.is_file():
        raise FileNotFoundError(f"Inno Setup did not write {setup}")
    if config is not None:  # iscc signed setup and uninstaller through the SignTool directive
        subprocess.run([signtool(), "verify", "/pa", str(setup)], check=True)
    return setup


def main(argv: list[str] | None = None) -> int:
    """``python installer/windows_package.py verify FILE...``: check Authenticode signatures."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] != "verify":
        print("usage: windows_package.py verify FILE...", file=sys.stderr)
        return 2
    return subprocess.run([signtool(), "verify", "/pa", "/v", *args[1:]]).returncode


if __name__ == "__main__":
    raise SystemExit(main())
