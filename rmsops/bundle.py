"""The incident bundle: a folder of evidence with a manifest of SHA-256 hashes, and its zip.

``verify`` proves later that nothing in a bundle changed; ``diff`` compares two triages
("did the fix work?").
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rmsops.errors import UserError
from rmsops.findings import Finding, Severity, read_document

MANIFEST = "manifest.json"
MANIFEST_SCHEMA = "rmsops.manifest/1"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def files_of(folder: Path) -> list[str]:
    """Every file of a bundle, as POSIX paths relative to it, except the manifest itself."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.name != MANIFEST)


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


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise UserError(f"{folder} is not an rmsops bundle (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{path} is not valid JSON: the bundle's manifest was damaged") from None
    if manifest.get("schema") != MANIFEST_SCHEMA:
        raise UserError(f"{path}: not an rmsops manifest (schema {manifest.get('schema')!r})")
    return manifest


@dataclass
class Verification:
    changed: list[str]
    missing: list[str]
    added: list[str]
    checked: int

    @property
    def ok(self) -> bool:
        return not (self.changed or self.missing or self.added)


def verify(folder: Path) -> Verification:
    """Compare every file with the manifest's hash; report changed, missing and added files."""
    manifest = read_manifest(folder)
    listed: dict[str, dict] = manifest["files"]
    present = set(files_of(folder))
    changed = [name for name in sorted(listed) if name in present and sha256(folder / name) != listed[name]["sha256"]]
    missing = sorted(set(listed) - present)
    added = sorted(present - set(listed))
    return Verification(changed, missing, added, len(listed))


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


def make_zip(folder: Path, target: Path) -> Path:
    """A zip of the whole bundle (written beside it, atomically), to attach to a ticket."""
    tmp = target.with_name(f".{target.name}.tmp")
    # Fast deflate, and PNGs stored as they are (already compressed): the zip is the last step of a
    # triage, so its seconds are the user's.
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name in [*files_of(folder), MANIFEST]:
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
