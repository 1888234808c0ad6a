"""The incident bundle: a folder of evidence with a manifest of SHA-256 hashes, and its zip.

``verify`` proves later that nothing in a bundle (or its zip) changed since its manifest was
written; the manifest's own SHA-256 (``manifest_digest``, printed by the triage and recorded in the
ticket) or a signature (``rmsops.execution.signing``) proves that the manifest itself was not rewritten.
``diff`` compares two triages ("did the fix work?").
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmsops.core.errors import UserError
from rmsops.core.findings import Finding, Severity, read_document

MANIFEST = "manifest.json"
MANIFEST_SCHEMA = "rmsops.manifest/1"
SIGNATURE = "manifest.sig.json"  # written beside the manifest by rmsops.execution.signing, after it
# The only files the manifest does not list, and only at the top of the bundle: a nested file of
# the same name is evidence like any other.
NOT_IN_MANIFEST = (MANIFEST, SIGNATURE)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def files_of(folder: Path) -> list[str]:
    """Every file of a bundle, as POSIX paths relative to it, except the top-level manifest and signature."""
    names = (p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return sorted(name for name in names if name not in NOT_IN_MANIFEST)


def write_manifest(folder: Path, details: dict[str, Any]) -> Path:
    """Hash every file and write manifest.json (atomically) with the run's details."""
    manifest = {"schema": MANIFEST_SCHEMA, **details,
                "files": {name: {"sha256": sha256(folder / name), "bytes": (folder / name).stat().st_size}
                          for name in files_of(folder)}}
    path = folder / MANIFEST
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def manifest_digest(folder: Path) -> str:
    """SHA-256 (hex) of the top-level manifest.json's bytes: recorded elsewhere, it pins the whole bundle."""
    path = folder / MANIFEST
    if not path.is_file():
        raise UserError(f"{folder} is not an rmsops bundle (no {MANIFEST})")
    return sha256(path)


def parse_digest(text: str) -> str:
    """A recorded manifest digest as given on the command line: 64 hex digits (``sha256:`` prefix allowed)."""
    value = text.strip().lower().removeprefix("sha256:").strip()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise UserError(f"--digest {text.strip()[:80]!r}: expected the 64 hex digits printed as "
                        "'manifest sha256: ...' by the triage")
    return value


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise UserError(f"{folder} is not an rmsops bundle (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{path} is not valid JSON: the bundle's manifest was damaged") from None
    schema = manifest.get("schema") if isinstance(manifest, dict) else None
    if schema != MANIFEST_SCHEMA:
        raise UserError(f"{path}: not an rmsops manifest (schema {schema!r})")
    return manifest


@dataclass
class ZipCheck:
    """The zip beside a bundle against the folder's manifest."""

    path: Path
    members: int = 0  # file members read
    # (what, path in the bundle); what: changed, missing, extra, duplicate, differs, unreadable
    problems: list[tuple[str, str]] = field(default_factory=list)
    error: str = ""  # the archive as a whole is unusable

    @property
    def ok(self) -> bool:
        return not (self.problems or self.error)


@dataclass
class Verification:
    changed: list[str]
    missing: list[str]
    added: list[str]
    checked: int
    zip: ZipCheck | None = None  # None: no DIR.zip beside the bundle

    @property
    def files_ok(self) -> bool:
        return not (self.changed or self.missing or self.added)

    @property
    def ok(self) -> bool:
        return self.files_ok and (self.zip is None or self.zip.ok)


def zip_beside(folder: Path) -> Path | None:
    """``DIR.zip`` next to the bundle folder ``DIR``, where the triage writes it (None when there is none)."""
    resolved = folder.resolve()
    if not resolved.name:
        return None
    path = resolved.with_name(resolved.name + ".zip")
    return path if path.is_file() else None


def verify(folder: Path) -> Verification:
    """Compare every file, and every member of the zip beside the bundle, with the manifest's hash."""
    manifest = read_manifest(folder)
    listed = manifest.get("files")
    if not isinstance(listed, dict) or not all(isinstance(v, dict) and "sha256" in v for v in listed.values()):
        raise UserError(f"{folder / MANIFEST}: no valid file list: the bundle's manifest was damaged")
    present = set(files_of(folder))
    changed = [name for name in sorted(listed) if name in present and sha256(folder / name) != listed[name]["sha256"]]
    missing = sorted(set(listed) - present)
    added = sorted(present - set(listed))
    archive = zip_beside(folder)
    return Verification(changed, missing, added, len(listed),
                        check_zip(folder, listed, archive) if archive else None)


def check_zip(folder: Path, listed: dict[str, dict], archive: Path) -> ZipCheck:
    """Every member of the bundle's zip hashed against the manifest: none changed, missing or extra, and
    its manifest.json (and signature) byte for byte the folder's."""
    result = ZipCheck(archive)
    try:
        zipped = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        result.error = f"not a readable zip ({exc})"
        return result
    with zipped:
        infos = [info for info in zipped.infolist() if not info.is_dir()]
        result.members = len(infos)
        tops = {info.filename.split("/", 1)[0] for info in infos}
        if len(tops) != 1 or any("/" not in info.filename for info in infos):
            result.error = "not a bundle's zip: its files are not all in one folder"
            return result
        prefix = f"{tops.pop()}/"
        names = [info.filename[len(prefix):] for info in infos]
        # A second member of the same name (appended to the zip) is what most tools would extract.
        result.problems += [("duplicate", name) for name, n in sorted(Counter(names).items()) if n > 1]
        for info, name in zip(infos, names, strict=True):
            if name in NOT_IN_MANIFEST:
                ours = folder / name
                if not ours.is_file():
                    result.problems.append(("extra", name))
                elif _read_member(zipped, info) != ours.read_bytes():
                    result.problems.append(("differs", name))
            elif name not in listed:
                result.problems.append(("extra", name))
            else:
                digest = _hash_member(zipped, info)
                if digest is None:
                    result.problems.append(("unreadable", name))
                elif digest != listed[name]["sha256"]:
                    result.problems.append(("changed", name))
        expected = {*listed, MANIFEST, *([SIGNATURE] if (folder / SIGNATURE).is_file() else [])}
        result.problems += [("missing", name) for name in sorted(expected - set(names))]
    return result


_MEMBER_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError)


def _hash_member(zipped: zipfile.ZipFile, info: zipfile.ZipInfo) -> str | None:
    digest = hashlib.sha256()
    try:
        with zipped.open(info) as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except _MEMBER_ERRORS:  # a bad CRC, an encrypted or truncated member
        return None
    return digest.hexdigest()


def _read_member(zipped: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes | None:
    try:
        return zipped.read(info)
    except _MEMBER_ERRORS:
        return None


def prepare_folder(out_dir: Path) -> None:
    """Make sure the bundle's folder can be created, before anything runs (a UserError if not)."""
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        probe = out_dir.parent / f".{out_dir.name}.probe-{os.getpid()}"
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise UserError(f"cannot write the bundle to {out_dir.parent}: {exc.strerror or exc}; "
                        "choose another -o") from None


def make_staging(out_dir: Path) -> Path:
    """The hidden folder a bundle is written into before it is moved into place."""
    staging = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    return staging


def make_zip(folder: Path, target: Path) -> Path:
    """A zip of the whole bundle (written beside it, atomically), to attach to a ticket."""
    tmp = target.with_name(f".{target.name}.tmp")
    # Fast deflate, and PNGs (an older bundle's figures) stored as they are, already compressed:
    # the zip is the last step of a triage, so its seconds are the user's.
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        signed = [SIGNATURE] if (folder / SIGNATURE).is_file() else []
        for name in [*files_of(folder), MANIFEST, *signed]:
            stored = zipfile.ZIP_STORED if name.endswith(".png") else None
            archive.write(folder / name, arcname=f"{folder.name}/{name}", compress_type=stored)
    os.replace(tmp, target)
    return target


def move_into_place(staging: Path, target: Path, force: bool) -> None:
    """Replace ``target`` by the finished ``staging`` folder (same filesystem: a rename)."""
    if target.exists():
        if not force:
            raise UserError(f"{target} exists; choose another -o or pass --force to replace it")
        shutil.rmtree(target)
    os.replace(staging, target)


# --- diff -------------------------------------------------------------------------------------

PROBLEMS = (Severity.WARNING, Severity.CRITICAL, Severity.ERROR)


@dataclass
class FindingsDiff:
    resolved: list[Finding]  # a problem in A, not a problem in B
    new: list[Finding]  # not a problem in A, a problem in B
    still: list[tuple[Finding, Finding]]  # a problem in both (A's, B's)


def _key(finding: Finding) -> tuple[str, str]:
    return finding.check, finding.resource


def _problems(findings: list[Finding]) -> dict[tuple[str, str], Finding]:
    worst: dict[tuple[str, str], Finding] = {}
    for finding in findings:
        if finding.severity in PROBLEMS:
            current = worst.get(_key(finding))
            if current is None or finding.severity.rank < current.severity.rank:
                worst[_key(finding)] = finding
    return worst


def diff(bundle_a: Path, bundle_b: Path) -> FindingsDiff:
    """What a second triage says about the problems of the first, by (check, resource)."""
    a = _problems(_findings_of(bundle_a))
    b = _problems(_findings_of(bundle_b))
    return FindingsDiff(resolved=[a[k] for k in a if k not in b], new=[b[k] for k in b if k not in a],
                        still=[(a[k], b[k]) for k in a if k in b])


def _findings_of(bundle: Path) -> list[Finding]:
    path = bundle / "findings.json" if bundle.is_dir() else bundle
    if not path.is_file():
        raise UserError(f"{bundle}: no findings.json (not a triage bundle)")
    try:
        return read_document(path)[1]
    except (ValueError, KeyError) as exc:
        raise UserError(f"{path}: {exc}") from None
