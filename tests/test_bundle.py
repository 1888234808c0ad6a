"""The incident bundle: manifest hashes, verify after tampering, zip, diff between triages."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import utils as asym_utils
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from moto import mock_aws

from rmsops import cli
from rmsops.core.errors import UserError
from rmsops.core.findings import Finding, Severity, document, write_document
from rmsops.execution import bundle, signing
from rmsops.render.progress import Progress

START, END = datetime(2026, 11, 28, 19, tzinfo=UTC), datetime(2026, 11, 28, 20, tzinfo=UTC)


def finding(check: str, severity: str, resource: str = "r") -> Finding:
    return Finding(check, Severity(severity), resource, f"{check} is {severity}", runbook="01-x")


def make_bundle(folder: Path, findings: list[Finding]) -> Path:
    (folder / "01-x" / "plots").mkdir(parents=True)
    (folder / "01-x" / "01-x.html").write_text("<html>report</html>")
    (folder / "01-x" / "plots" / "a.png").write_bytes(b"\x89PNG fake")
    write_document(folder / "findings.json", document(findings, "demo", START, END))
    bundle.write_manifest(folder, {"status": "complete", "environment": "demo"})
    return folder


def test_manifest_lists_every_file_with_its_hash(tmp_path):
    folder = make_bundle(tmp_path / "b", [finding("app.alb.5xx", "critical")])
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {"findings.json", "01-x/01-x.html", "01-x/plots/a.png"}
    assert manifest["files"]["01-x/plots/a.png"]["sha256"] == bundle.sha256(folder / "01-x" / "plots" / "a.png")
    assert manifest["status"] == "complete"
    assert bundle.verify(folder).ok


def test_verify_detects_one_changed_byte_a_missing_and_an_added_file(tmp_path, capsys):
    folder = make_bundle(tmp_path / "b", [finding("app.alb.5xx", "critical")])
    report = folder / "01-x" / "01-x.html"
    data = bytearray(report.read_bytes())
    data[3] ^= 0x01
    report.write_bytes(bytes(data))
    (folder / "01-x" / "plots" / "a.png").unlink()
    (folder / "planted.txt").write_text("not evidence")
    result = bundle.verify(folder)
    assert (result.changed, result.missing, result.added) == (["01-x/01-x.html"], ["01-x/plots/a.png"],
                                                              ["planted.txt"])
    assert cli.main(["verify", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "changed  01-x/01-x.html" in out and "FAILED" in out


def test_verify_cli_ok_and_bad_input(tmp_path, capsys):
    folder = make_bundle(tmp_path / "b", [])
    assert cli.main(["verify", str(folder)]) == 0
    assert "ok: all 3 files match" in capsys.readouterr().out
    assert cli.main(["verify", str(tmp_path / "nope")]) == 2
    (folder / "manifest.json").write_text("{not json")
    assert cli.main(["verify", str(folder)]) == 2
    assert "damaged" in capsys.readouterr().err


def test_zip_holds_the_whole_bundle(tmp_path):
    folder = make_bundle(tmp_path / "inc-42", [])
    archive = bundle.make_zip(folder, tmp_path / "inc-42.zip")
    names = set(zipfile.ZipFile(archive).namelist())
    assert names == {"inc-42/findings.json", "inc-42/01-x/01-x.html", "inc-42/01-x/plots/a.png",
                     "inc-42/manifest.json"}


def test_move_into_place_refuses_to_overwrite_without_force(tmp_path):
    target = tmp_path / "bundle"
    target.mkdir()
    (target / "old.txt").write_text("old")
    staging = tmp_path / ".bundle.partial"
    staging.mkdir()
    (staging / "new.txt").write_text("new")
    with pytest.raises(UserError, match="--force"):
        bundle.move_into_place(staging, target, force=False)
    assert (target / "old.txt").exists()
    bundle.move_into_place(staging, target, force=True)
    assert (target / "new.txt").exists() and not (target / "old.txt").exists() and not staging.exists()


def test_diff_resolved_new_and_still_failing(tmp_path, capsys):
    before = make_bundle(tmp_path / "a", [
        finding("app.alb.5xx", "critical"), finding("db.connectivity", "critical"),
        finding("app.ecs.capacity", "warning", "svc"), finding("db.rds.status", "ok")])
    after = make_bundle(tmp_path / "b", [
        finding("app.alb.5xx", "ok"), finding("db.connectivity", "warning"),
        finding("app.ecs.capacity", "ok", "svc"), finding("db.rds.status", "critical")])
    result = bundle.diff(before, after)
    assert {f.check for f in result.resolved} == {"app.alb.5xx", "app.ecs.capacity"}
    assert [f.check for f in result.new] == ["db.rds.status"]
    assert [(a.severity.value, b.severity.value) for a, b in result.still] == [("critical", "warning")]
    assert cli.main(["diff", str(before), str(after)]) == 1
    out = capsys.readouterr().out
    assert "resolved (2)" in out and "new (1)" in out and "critical → warning" in out


def test_diff_all_resolved_is_exit_0(tmp_path, capsys):
    before = make_bundle(tmp_path / "a", [finding("app.alb.5xx", "critical")])
    after = make_bundle(tmp_path / "b", [finding("app.alb.5xx", "ok")])
    assert cli.main(["diff", str(before), str(after)]) == 0
    assert cli.main(["diff", str(before), str(tmp_path / "missing")]) == 2


def test_progress_is_quiet_off_a_terminal_and_counts_findings():
    stream = io.StringIO()
    with Progress(["01-x", "02-y"], stream=stream) as progress:
        progress.state("01-x", "running")
        progress.findings("01-x", [finding("app.alb.5xx", "critical"), finding("a", "ok")])
        progress.state("01-x", "done")
    assert stream.getvalue() == ""
    assert progress.first_finding_seconds is not None
    lines = progress.render()
    assert "1 critical" in lines[1] and "1 ok" in lines[1] and "done" in lines[1]
    assert "queued" in lines[2]
    assert "latest: CRITICAL app.alb.5xx" in lines[-1]


def test_progress_draws_live_on_a_terminal():
    stream = io.StringIO()
    with Progress(["01-x"], stream=stream, live=True) as progress:
        progress.state("01-x", "running")
    assert "01-x" in stream.getvalue() and "running" in stream.getvalue()


# --- the manifest anchored: its digest recorded elsewhere, the zip, signatures --------------------


def with_table(folder: Path) -> Path:
    """A bundle with a CSV, a nested manifest.json of a runbook's own, and the zip beside it."""
    (folder / "01-x" / "tables").mkdir(parents=True)
    (folder / "01-x" / "tables" / "targets.csv").write_text("target,state\n10.0.1.5,unhealthy\n")
    (folder / "01-x" / "manifest.json").write_text('{"runbook": "01-x"}\n')
    make_bundle(folder, [finding("app.alb.5xx", "critical"), finding("db.connectivity", "critical", "db"),
                         finding("db.rds.status", "ok")])
    return folder


def recorded_digest(folder: Path) -> str:
    """What the triage prints as 'manifest sha256: ...' (computed here independently)."""
    return hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()


def rehash(folder: Path, name: str) -> None:
    """The attacker's move: update one file's hash in the manifest to its new content."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][name] = {"sha256": bundle.sha256(folder / name), "bytes": (folder / name).stat().st_size}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def test_manifest_digest_is_the_sha256_of_the_manifest_bytes(tmp_path):
    folder = with_table(tmp_path / "b")
    assert bundle.manifest_digest(folder) == recorded_digest(folder)
    with pytest.raises(UserError, match="no manifest.json"):
        bundle.manifest_digest(tmp_path)


def test_a_csv_edited_with_its_hash_passes_plain_verify_but_not_the_recorded_digest(tmp_path, capsys):
    folder = with_table(tmp_path / "b")
    digest = recorded_digest(folder)
    (folder / "01-x" / "tables" / "targets.csv").write_text("target,state\n10.0.1.5,healthy\n")
    rehash(folder, "01-x/tables/targets.csv")
    assert cli.main(["verify", str(folder)]) == 0  # the manifest alone proves nothing against this
    assert f"manifest sha256: {recorded_digest(folder)}" in capsys.readouterr().out
    assert cli.main(["verify", str(folder), "--digest", digest]) == 1
    out = capsys.readouterr().out
    assert "the manifest was changed or regenerated since the digest was recorded" in out
    assert out.strip().splitlines()[-1].startswith("FAILED")


def test_critical_findings_deleted_and_the_manifest_recomputed_fail_the_recorded_digest(tmp_path, capsys):
    folder = with_table(tmp_path / "b")
    digest = recorded_digest(folder)
    assert cli.main(["verify", str(folder), "--digest", digest.upper()]) == 0
    assert "digest:    ok" in capsys.readouterr().out
    write_document(folder / "findings.json", document([finding("db.rds.status", "ok")], "demo", START, END))
    bundle.write_manifest(folder, {"status": "complete", "environment": "demo"})
    assert bundle.verify(folder).ok
    assert cli.main(["verify", str(folder), "--digest", f"sha256:{digest}"]) == 1
    assert "changed or regenerated" in capsys.readouterr().out


def test_a_nested_manifest_json_is_evidence_like_any_other_file(tmp_path, capsys):
    folder = with_table(tmp_path / "b")
    assert "01-x/manifest.json" in json.loads((folder / "manifest.json").read_text())["files"]
    (folder / "01-x" / "manifest.json").write_text('{"runbook": "01-x", "edited": true}\n')
    (folder / "01-x" / "plots" / "manifest.json").write_text("{}")
    result = bundle.verify(folder)
    assert (result.changed, result.added) == (["01-x/manifest.json"], ["01-x/plots/manifest.json"])
    assert cli.main(["verify", str(folder)]) == 1
    assert "changed  01-x/manifest.json" in capsys.readouterr().out


def rewrite_zip(path: Path, change) -> None:
    """Rewrite the zip, each member through ``change(name, data)`` (None drops it), plus what it returns
    for the name "+"."""
    with zipfile.ZipFile(path) as old:
        members = [(info.filename, old.read(info)) for info in old.infolist()]
    with zipfile.ZipFile(path, "w") as new:
        for name, data in members:
            data = change(name, data)
            if data is not None:
                new.writestr(name, data)
        for name, data in change("+", None) or []:
            new.writestr(name, data)


def _zip_manifest_rehashed(name, data):
    if name == "inc-42/findings.json":
        return data.replace(b"critical", b"ok")
    if name == "inc-42/manifest.json":  # the zip's own manifest made to agree with the edited member
        return data.replace(b'"findings.json": {\n      "sha256": "', b'"findings.json": {\n      "sha256": "0')
    return None if name == "+" else data


ZIP_TAMPERING = {
    "a member changed": (lambda n, d: d.replace(b"report", b"rep0rt") if n.endswith(".html") else
                         (None if n == "+" else d), "changed", "01-x/01-x.html"),
    "a member removed": (lambda n, d: None if n in ("+", "inc-42/01-x/plots/a.png") else d,
                         "missing", "01-x/plots/a.png"),
    "a member added": (lambda n, d: [("inc-42/planted.txt", b"x")] if n == "+" else d, "extra", "planted.txt"),
    "a member twice": (lambda n, d: [("inc-42/findings.json", b"[]")] if n == "+" else d,
                       "duplicate", "findings.json"),
    "its manifest differs": (_zip_manifest_rehashed, "differs", "manifest.json"),
}


@pytest.mark.filterwarnings("ignore:Duplicate name")  # the appended member, on purpose
@pytest.mark.parametrize("case", list(ZIP_TAMPERING))
def test_verify_checks_the_zip_beside_the_bundle(tmp_path, capsys, case):
    folder = with_table(tmp_path / "inc-42")
    archive = bundle.make_zip(folder, tmp_path / "inc-42.zip")
    checked = bundle.verify(folder)
    assert checked.ok and checked.zip is not None and checked.zip.members == 6
    assert cli.main(["verify", str(folder)]) == 0
    assert "zip:       ok, all 6 members of inc-42.zip" in capsys.readouterr().out
    change, label, name = ZIP_TAMPERING[case]
    rewrite_zip(archive, change)
    checked = bundle.verify(folder)
    assert checked.files_ok and not checked.ok
    assert (label, name) in checked.zip.problems
    assert cli.main(["verify", str(folder)]) == 1
    out = capsys.readouterr().out
    assert f"  zip {label:10} {name}" in out and "zip:       FAILED" in out


def test_a_file_that_is_not_a_zip_beside_the_bundle_fails(tmp_path, capsys):
    folder = with_table(tmp_path / "inc-42")
    (tmp_path / "inc-42.zip").write_bytes(b"PK not really")
    assert bundle.verify(folder).zip.error.startswith("not a readable zip")
    assert cli.main(["verify", str(folder)]) == 1


# --- signatures ---------------------------------------------------------------------------------


def ed25519_pair(folder: Path, name: str = "signing") -> tuple[Path, Path]:
    key = Ed25519PrivateKey.generate()
    folder.mkdir(parents=True, exist_ok=True)
    private, public = folder / f"{name}.pem", folder / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def flip(path: Path, index: int | None = None) -> None:
    """One bit of one byte changed (by default one inside a hash, so the manifest stays valid JSON)."""
    data = bytearray(path.read_bytes())
    index = data.index(b'"sha256": "') + 20 if index is None else index
    data[index] ^= 0x01
    path.write_bytes(bytes(data))


def test_an_ed25519_signature_verifies_and_fails_after_any_byte_of_the_manifest_changes(tmp_path, capsys):
    private, public = ed25519_pair(tmp_path / "keys")
    folder = with_table(tmp_path / "inc-42")
    signing.check_signing_spec(str(private))
    path = signing.sign_manifest(folder, str(private))
    record = json.loads(path.read_text())
    assert path == folder / "manifest.sig.json" and record["algorithm"] == "Ed25519"
    key_fingerprint = signing.fingerprint(serialization.load_pem_public_key(public.read_bytes()))
    assert record["key_fingerprint"] == key_fingerprint and record["manifest_sha256"] == recorded_digest(folder)
    bundle.make_zip(folder, tmp_path / "inc-42.zip")  # the signature goes into the zip too
    assert "inc-42/manifest.sig.json" in zipfile.ZipFile(tmp_path / "inc-42.zip").namelist()

    trusted = signing.verify_signature(folder, public)
    assert (trusted.ok, trusted.trusted, trusted.status, trusted.signer) == (True, True, "ok", key_fingerprint)
    assert cli.main(["verify", str(folder), "--key", str(public)]) == 0
    out = capsys.readouterr().out
    assert "signature: ok, valid Ed25519 signature by the key given with --key" in out and "zip:       ok" in out
    embedded = signing.verify_signature(folder, None)
    assert embedded.ok and not embedded.trusted and embedded.status == "consistent only"
    assert cli.main(["verify", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "signature: consistent only" in out and "does not prove who signed" in out and key_fingerprint in out

    manifest = folder / "manifest.json"
    original = manifest.read_bytes()
    for index in range(len(original)):
        flip(manifest, index)
        assert not signing.verify_signature(folder, public).ok, index
        assert not signing.verify_signature(folder, None).ok, index
        manifest.write_bytes(original)
    flip(manifest)
    assert cli.main(["verify", str(folder), "--key", str(public)]) == 1
    assert "signature: FAILED" in capsys.readouterr().out


def test_a_resigned_bundle_fails_against_the_trusted_key(tmp_path, capsys):
    private, public = ed25519_pair(tmp_path / "keys")
    attacker, _ = ed25519_pair(tmp_path / "keys", "attacker")
    folder = with_table(tmp_path / "inc-42")
    signing.sign_manifest(folder, str(private))
    write_document(folder / "findings.json", document([], "demo", START, END))
    bundle.write_manifest(folder, {"status": "complete", "environment": "demo"})
    assert cli.main(["verify", str(folder), "--key", str(public)]) == 1  # the old signature, a new manifest
    signing.sign_manifest(folder, str(attacker))
    assert signing.verify_signature(folder, None).status == "consistent only"  # consistent, not authentic
    assert cli.main(["verify", str(folder), "--key", str(public)]) == 1
    assert "does not match manifest.json and the key given with --key" in capsys.readouterr().out
    (folder / "manifest.sig.json").unlink()
    assert cli.main(["verify", str(folder), "--key", str(public)]) == 1
    assert "its signature was removed" in capsys.readouterr().out


@pytest.fixture
def kms():
    with mock_aws():
        yield boto3.client("kms", region_name="us-east-1")


@pytest.mark.parametrize(("key_spec", "algorithm"), [("ECC_NIST_P256", "ECDSA_SHA_256"),
                                                     ("RSA_2048", "RSASSA_PSS_SHA_256")])
def test_a_kms_signature_verifies_and_fails_after_a_change(tmp_path, capsys, kms, key_spec, algorithm):
    key = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec=key_spec)["KeyMetadata"]
    folder = with_table(tmp_path / "inc-42")
    signing.check_signing_spec(f"kms:{key['KeyId']}")
    signing.sign_manifest(folder, f"kms:{key['KeyId']}", lambda: kms)
    record = json.loads((folder / "manifest.sig.json").read_text())
    assert (record["algorithm"], record["kms_key_id"], record["message_type"]) == (algorithm, key["Arn"], "DIGEST")
    checked = signing.verify_signature(folder, None, lambda: kms)
    assert (checked.ok, checked.signer, checked.status) == (True, key["Arn"], "ok")
    assert cli.main(["verify", str(folder)]) == 0  # boto3's own client, in the ARN's Region
    assert f"signature: ok, valid {algorithm} signature by KMS key {key['Arn']}" in capsys.readouterr().out
    assert cli.main(["verify", str(folder), "--key", f"kms:{key['KeyId']}"]) == 0
    other = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec=key_spec)["KeyMetadata"]
    assert cli.main(["verify", str(folder), "--key", f"kms:{other['Arn']}"]) == 1
    capsys.readouterr()
    flip(folder / "manifest.json")
    assert not signing.verify_signature(folder, None, lambda: kms).ok
    assert cli.main(["verify", str(folder)]) == 1
    assert "signature: FAILED, KMS says" in capsys.readouterr().out


def test_kms_refusals_are_one_line(tmp_path, kms):
    folder = with_table(tmp_path / "inc-42")
    symmetric = kms.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(signing.SigningError, match="cannot sign .*KeyUsage.*SIGN_VERIFY") as raised:
        signing.sign_manifest(folder, f"kms:{symmetric}", lambda: kms)
    assert "\n" not in str(raised.value)
    with pytest.raises(signing.SigningError, match="NotFoundException.*iam-policy-signing.json"):
        signing.sign_manifest(folder, "kms:alias/nope", lambda: kms)
    assert not (folder / "manifest.sig.json").exists()


class DigestKms:
    """KMS as AWS documents Sign with MessageType=DIGEST (moto signs the digest as a message instead)."""

    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.arn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

    def describe_key(self, KeyId):
        return {"KeyMetadata": {"Arn": self.arn, "KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY",
                                "SigningAlgorithms": ["ECDSA_SHA_256"]}}

    def sign(self, KeyId, Message, MessageType, SigningAlgorithm):
        assert (MessageType, len(Message), SigningAlgorithm) == ("DIGEST", 32, "ECDSA_SHA_256")
        signature = self.key.sign(Message, ec.ECDSA(asym_utils.Prehashed(hashes.SHA256())))
        return {"KeyId": self.arn, "Signature": signature, "SigningAlgorithm": SigningAlgorithm}


def test_a_kms_signature_checks_offline_against_the_keys_public_key(tmp_path, capsys):
    fake = DigestKms()
    public = tmp_path / "kms.der"  # as `aws kms get-public-key` gives it, base64-decoded
    public.write_bytes(fake.key.public_key().public_bytes(serialization.Encoding.DER,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    folder = with_table(tmp_path / "inc-42")
    signing.sign_manifest(folder, "kms:alias/rmsops-bundles", lambda: fake)
    assert cli.main(["verify", str(folder), "--key", str(public)]) == 0
    assert "signature: ok, valid ECDSA_SHA_256 signature by the key given with --key" in capsys.readouterr().out
    other, _ = ed25519_pair(tmp_path / "keys")
    assert cli.main(["verify", str(folder), "--key", str(other.with_suffix(".pub"))]) == 1
    flip(folder / "manifest.json")
    assert cli.main(["verify", str(folder), "--key", str(public)]) == 1


def bad_key_files(folder: Path) -> dict[str, tuple[Path, str]]:
    folder.mkdir()
    encrypted = folder / "encrypted.pem"
    encrypted.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")))
    rsa_key = folder / "rsa.pem"
    rsa_key.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    _, public = ed25519_pair(folder)
    (folder / "garbage.pem").write_text("not a key\n")
    return {"missing": (folder / "nope.pem", "no such file.*openssl genpkey"),
            "a folder": (folder, "cannot read it"),
            "not PEM": (folder / "garbage.pem", "not a PEM PKCS8 private key.*openssl genpkey"),
            "encrypted": (encrypted, "is encrypted.*unencrypted PKCS8.*openssl pkey"),
            "a public key": (public, "is a public key.*needs the private key"),
            "RSA": (rsa_key, "is an RSA key, not Ed25519.*kms:KEY_ID"),
            "bad kms form": (Path("kms:not a key"), "expected kms: and a key id"),
            "empty": (Path(""), "needs an Ed25519 private key file or kms:KEY_ID")}


def test_a_bad_signing_key_is_one_user_error_line_before_anything_runs(tmp_path):
    folder = with_table(tmp_path / "inc-42")
    for case, (path, message) in bad_key_files(tmp_path / "keys").items():
        spec = "" if case == "empty" else str(path)
        with pytest.raises(UserError, match=message) as raised:
            signing.check_signing_spec(spec)
        assert "\n" not in str(raised.value) and len(str(raised.value)) < 300, case
        with pytest.raises(UserError, match=message):
            signing.sign_manifest(folder, spec)
    assert not (folder / "manifest.sig.json").exists()
    signing.check_signing_spec("kms:alias/rmsops-bundles")  # only its form: no AWS call
    signing.check_signing_spec("kms:arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab")


def test_verify_exit_codes(tmp_path, capsys):
    private, public = ed25519_pair(tmp_path / "keys")
    folder = with_table(tmp_path / "inc-42")
    signing.sign_manifest(folder, str(private))
    bundle.make_zip(folder, tmp_path / "inc-42.zip")
    digest = recorded_digest(folder)
    assert cli.main(["verify", str(folder), "--digest", digest, "--key", str(public)]) == 0
    out = capsys.readouterr().out
    assert [line.split(":")[0] for line in out.splitlines()] == ["files", "zip", "digest", "signature", "ok"]
    assert out.splitlines()[-1] == ("ok: all 5 files match the manifest; so does the zip; the manifest is the one "
                                    "recorded; signature ok")
    assert cli.main(["verify", str(folder), "--digest", "0" * 64]) == 1
    bad = {"not a folder": ["verify", str(tmp_path / "inc-42.zip")],
           "no manifest": ["verify", str(tmp_path / "keys")],
           "malformed --digest": ["verify", str(folder), "--digest", digest[:-1]],
           "not hex": ["verify", str(folder), "--digest", "z" * 64],
           "a missing --key": ["verify", str(folder), "--key", str(tmp_path / "nope.pub")],
           "a private --key": ["verify", str(folder), "--key", str(private)],
           "a bad kms --key": ["verify", str(folder), "--key", "kms:"]}
    capsys.readouterr()
    for case, argv in bad.items():
        assert cli.main(argv) == 2, case
        captured = capsys.readouterr()
        assert captured.out == "" and len(captured.err.strip().splitlines()) == 1, case
        assert captured.err.startswith("rmsops: error: "), case


def test_a_kms_signature_that_cannot_be_checked_is_exit_2_unless_something_differs(tmp_path, capsys, monkeypatch):
    fake = DigestKms()
    folder = with_table(tmp_path / "inc-42")
    signing.sign_manifest(folder, "kms:alias/rmsops-bundles", lambda: fake)

    class Denied:
        def verify(self, **_):
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not allowed\nat all"}}, "Verify")

    monkeypatch.setattr(signing, "_default_kms_client", lambda key_id: lambda: Denied())
    assert cli.main(["verify", str(folder)]) == 2
    captured = capsys.readouterr()
    assert "signature: could not check, with KMS key arn:aws:kms:eu-west-1:111122223333:key/" in captured.out
    assert "AccessDeniedException: not allowed at all; it needs kms:Verify" in captured.out
    assert len(captured.err.strip().splitlines()) == 1
    (folder / "findings.json").write_text("[]")
    assert cli.main(["verify", str(folder)]) == 1  # a mismatch found is reported as one
