"""Optional signature of a bundle's manifest: with an Ed25519 key file, or with an AWS KMS asymmetric key.

The manifest lists every file of the bundle with its SHA-256, so a valid signature over the manifest
covers the whole bundle. The signature is written beside it, in ``manifest.sig.json`` (which, like
the top-level manifest, is not listed in the manifest):

* ``spec`` a path: an Ed25519 private key (PEM, PKCS8, unencrypted, e.g. from
  ``openssl genpkey -algorithm ed25519 -out rmsops-signing.pem``) signs the manifest's bytes; the
  file records the public key and its fingerprint (SHA-256 of its DER SubjectPublicKeyInfo, as
  ``openssl pkey -pubin -in KEY.pub -outform DER | sha256sum`` prints it).
* ``spec`` ``kms:KEY_ID``: AWS KMS ``Sign`` over the manifest's digest (``MessageType=DIGEST``) with an
  asymmetric ``SIGN_VERIFY`` key; the algorithm follows the key spec (ECDSA for ECC keys over the
  digest of the matching size, RSASSA-PSS-SHA-256 for RSA keys). The file records the key's ARN.

Checking a signature against a key the bundle itself names proves only that manifest and signature
agree; against a key the verifier trusts (``--key``), that the key's holder signed this manifest.

The AWS calls are made on ``kms`` clients only (``docs/iam-policy-signing.json`` grants them and
``tests/test_safety.py`` reads them from this file). Nothing here imports the command line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from rmsops.core.errors import UserError

MANIFEST = "manifest.json"  # the same names as rmsops.execution.bundle's
SIGNATURE = "manifest.sig.json"
SCHEMA = "rmsops.signature/1"
ED25519 = "Ed25519"
KMS_PREFIX = "kms:"
POLICY = "docs/iam-policy-signing.json"

# Which KMS signing algorithm for which key spec, and the digest each one signs.
KMS_ALGORITHMS = {"ECC_NIST_P256": "ECDSA_SHA_256", "ECC_SECG_P256K1": "ECDSA_SHA_256",
                  "ECC_NIST_P384": "ECDSA_SHA_384", "ECC_NIST_P521": "ECDSA_SHA_512",
                  "RSA_2048": "RSASSA_PSS_SHA_256", "RSA_3072": "RSASSA_PSS_SHA_256",
                  "RSA_4096": "RSASSA_PSS_SHA_256"}
DIGESTS: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "ECDSA_SHA_256": hashes.SHA256, "ECDSA_SHA_384": hashes.SHA384, "ECDSA_SHA_512": hashes.SHA512,
    "RSASSA_PSS_SHA_256": hashes.SHA256}
# A key id, a key ARN, an alias name or an alias ARN (multi-Region keys too).
_KMS_KEY_ID = re.compile(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/[\w/+=,.@-]+"
                         r"|alias/[\w/+=,.@-]+|mrk-[0-9a-f]{32}|[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}")
_NEW_KEY = "create one with `openssl genpkey -algorithm ed25519 -out rmsops-signing.pem`"
# KMS answers that mean "this is not a valid signature by that key" (the others: it could not check).
_KMS_INVALID = {"KMSInvalidSignatureException", "InvalidSignatureException", "ValidationException",
                "InvalidKeyUsageException"}


class SigningError(UserError):
    """The manifest could not be signed (the key or KMS refused); one line saying what and how to fix it."""


# --- signing --------------------------------------------------------------------------------------


def check_signing_spec(spec: str) -> None:
    """Validate ``--sign SPEC`` before anything runs: a key file is loaded (not used); ``kms:`` only by form."""
    if spec.startswith(KMS_PREFIX):
        _kms_key_id(spec)
    else:
        _load_private_key(_key_path(spec))


def sign_manifest(folder: Path, spec: str, kms_client: Callable[[], Any] | None = None) -> Path:
    """Sign ``folder``'s manifest.json with SPEC (a key file or ``kms:KEY_ID``); write and return
    manifest.sig.json. ``kms_client`` makes the boto3 KMS client (default: boto3's, in the key ARN's Region)."""
    manifest = _manifest_bytes(folder)
    if spec.startswith(KMS_PREFIX):
        key_id = _kms_key_id(spec)
        record = _sign_with_kms(manifest, key_id, kms_client or _default_kms_client(key_id))
    else:
        key = _load_private_key(_key_path(spec))
        public = key.public_key()
        record = {"algorithm": ED25519, "key_fingerprint": fingerprint(public),
                  "public_key": public.public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
                  "signature": _b64(key.sign(manifest))}
    record = {"schema": SCHEMA, "signs": MANIFEST, "manifest_sha256": hashlib.sha256(manifest).hexdigest(), **record}
    path = folder / SIGNATURE
    tmp = folder / f".{SIGNATURE}.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def _sign_with_kms(manifest: bytes, key_id: str, make_client: Callable[[], Any]) -> dict[str, Any]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        kms = make_client()
        meta = kms.describe_key(KeyId=key_id)["KeyMetadata"]
        spec = meta.get("KeySpec") or meta.get("CustomerMasterKeySpec", "")
        if meta.get("KeyUsage") != "SIGN_VERIFY":
            raise SigningError(f"KMS key {key_id} cannot sign (KeyUsage {meta.get('KeyUsage')}); use an asymmetric "
                               "key made with --key-usage SIGN_VERIFY --key-spec ECC_NIST_P256")
        algorithm = KMS_ALGORITHMS.get(spec)
        if algorithm is None or algorithm not in meta.get("SigningAlgorithms", [algorithm]):
            raise SigningError(f"KMS key {key_id} has key spec {spec}; rmsops signs with ECC_NIST_P256, "
                               "ECC_NIST_P384, ECC_NIST_P521, ECC_SECG_P256K1 or RSA_2048/3072/4096 keys")
        answer = kms.sign(KeyId=key_id, Message=_digest(manifest, algorithm), MessageType="DIGEST",
                          SigningAlgorithm=algorithm)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        hint = ("it needs kms:DescribeKey and kms:Sign on the key"
                if code in ("AccessDeniedException", "NotFoundException") else "check the key's state and Region")
        raise SigningError(f"cannot sign the manifest with KMS key {key_id}: {code}: {_aws_message(exc)}; "
                           f"{hint} ({POLICY})") from None
    except BotoCoreError as exc:
        raise SigningError(f"cannot sign the manifest with KMS key {key_id}: {_one_line(exc)}") from None
    return {"algorithm": algorithm, "message_type": "DIGEST", "kms_key_id": meta.get("Arn") or answer.get("KeyId"),
            "signature": _b64(answer["Signature"])}


# --- verifying ------------------------------------------------------------------------------------


@dataclass
class SignatureCheck:
    present: bool  # the bundle has a signature file
    ok: bool  # valid, or absent when none was required
    detail: str  # one line: what was checked against what, and what that proves
    algorithm: str = ""
    signer: str = ""  # the key's fingerprint, or the KMS key's ARN
    trusted: bool = False  # checked against a key the verifier named (--key), not one the bundle names
    unchecked: bool = False  # could not be checked (KMS unreachable or not allowed): neither valid nor a mismatch

    @property
    def status(self) -> str:
        """ok, FAILED, could not check, none, or "consistent only" (valid against the key the bundle carries)."""
        if self.unchecked:
            return "could not check"
        if not self.ok:
            return "FAILED"
        if not self.present:
            return "none"
        return "consistent only" if self.algorithm == ED25519 and not self.trusted else "ok"


def verify_signature(folder: Path, public_key: Path | str | None = None,
                     kms_client: Callable[[], Any] | None = None) -> SignatureCheck:
    """Check manifest.sig.json against the manifest: with ``public_key`` (a PEM/DER public key file, or
    ``kms:KEY_ID``) when given; otherwise against the key the signature file names (Ed25519: the
    embedded public key, which proves consistency only; KMS: ``kms:Verify`` with the recorded key)."""
    trusted = load_trusted_key(public_key)  # a bad --key file is a UserError before anything else
    manifest = _manifest_bytes(folder)
    path = folder / SIGNATURE
    if not path.is_file():
        if trusted is not None:
            return SignatureCheck(False, False, f"--key was given but the bundle has no {SIGNATURE} "
                                                "(it was not signed, or its signature was removed)")
        return SignatureCheck(False, True, f"no {SIGNATURE}: the bundle is not signed")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        algorithm, signature = record["algorithm"], base64.b64decode(record["signature"], validate=True)
        if record.get("schema") != SCHEMA or not isinstance(algorithm, str):
            raise ValueError(record.get("schema"))
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, binascii.Error):
        return SignatureCheck(True, False, f"{SIGNATURE} is damaged or not an rmsops signature")
    if algorithm == ED25519:
        return _verify_ed25519(manifest, record, signature, trusted)
    if algorithm in DIGESTS:
        return _verify_kms(manifest, record, signature, trusted, kms_client)
    return SignatureCheck(True, False, f"{SIGNATURE}: unknown algorithm {str(algorithm)[:40]!r}", str(algorithm)[:40])


def _verify_ed25519(manifest: bytes, record: dict, signature: bytes, trusted: Any) -> SignatureCheck:
    if isinstance(trusted, str):
        return SignatureCheck(True, False, f"signed with an Ed25519 key, not with KMS key {trusted}", ED25519)
    if trusted is not None and not isinstance(trusted, Ed25519PublicKey):
        return SignatureCheck(True, False, f"signed with an Ed25519 key, but --key is {_kind(trusted)} key", ED25519)
    key = trusted
    if key is None:
        try:
            key = serialization.load_pem_public_key(str(record.get("public_key", "")).encode())
        except (ValueError, UnsupportedAlgorithm):
            key = None
        if not isinstance(key, Ed25519PublicKey):
            return SignatureCheck(True, False, f"{SIGNATURE}: its public key is damaged", ED25519)
    signer = fingerprint(key)
    try:
        key.verify(signature, manifest)
    except InvalidSignature:
        whose = "the key given with --key" if trusted is not None else "the public key it embeds"
        return SignatureCheck(True, False, f"the Ed25519 signature does not match manifest.json and {whose} "
                                           f"({signer}): the manifest was changed after it was signed, or signed "
                                           "with another key", ED25519, signer, trusted is not None)
    if trusted is not None:
        return SignatureCheck(True, True, f"valid Ed25519 signature by the key given with --key ({signer})",
                              ED25519, signer, True)
    return SignatureCheck(True, True, "the Ed25519 signature matches the public key the bundle itself carries, "
                                      "which anyone who can write to the bundle can replace: this does not prove who "
                                      f"signed. Compare its fingerprint {signer} with your signing key's, or pass "
                                      "--key PUBLIC_KEY_FILE", ED25519, signer, False)


def _verify_kms(manifest: bytes, record: dict, signature: bytes, trusted: Any,
                kms_client: Callable[[], Any] | None) -> SignatureCheck:
    algorithm = record["algorithm"]
    digest = _digest(manifest, algorithm)
    recorded = str(record.get("kms_key_id", ""))
    if trusted is not None and not isinstance(trusted, str):  # a public key file (from kms get-public-key)
        signer = fingerprint(trusted)
        try:
            if algorithm.startswith("ECDSA") and isinstance(trusted, ec.EllipticCurvePublicKey):
                trusted.verify(signature, digest, ec.ECDSA(utils.Prehashed(DIGESTS[algorithm]())))
            elif algorithm.startswith("RSASSA_PSS") and isinstance(trusted, rsa.RSAPublicKey):
                trusted.verify(signature, digest, padding.PSS(padding.MGF1(DIGESTS[algorithm]()), padding.PSS.AUTO),
                               utils.Prehashed(DIGESTS[algorithm]()))
            else:
                return SignatureCheck(True, False, f"signed with {algorithm} (KMS key {recorded}), but --key is "
                                                   f"{_kind(trusted)} key", algorithm, recorded, True)
        except InvalidSignature:
            return SignatureCheck(True, False, f"the {algorithm} signature does not match manifest.json and "
                                               f"the key given with --key ({signer}): the manifest was changed after "
                                               "it was signed, or signed with another key", algorithm, signer, True)
        return SignatureCheck(True, True, f"valid {algorithm} signature by the key given with --key ({signer}; "
                                          f"the bundle names KMS key {recorded})", algorithm, signer, True)
    key_id = trusted if isinstance(trusted, str) else recorded
    if not key_id:
        return SignatureCheck(True, False, f"{SIGNATURE}: no KMS key id", algorithm)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        kms = (kms_client or _default_kms_client(key_id))()
        valid = kms.verify(KeyId=key_id, Message=digest, MessageType="DIGEST", Signature=signature,
                           SigningAlgorithm=algorithm).get("SignatureValid") is True
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code not in _KMS_INVALID:
            return SignatureCheck(True, False, f"with KMS key {key_id}: {code}: "
                                               f"{_aws_message(exc)}; it needs kms:Verify on the key "
                                               f"({POLICY}), or pass --key with the key's public key", algorithm,
                                  key_id, unchecked=True)
        valid = False
    except BotoCoreError as exc:
        return SignatureCheck(True, False, f"with KMS key {key_id}: {_one_line(exc)}", algorithm, key_id,
                              unchecked=True)
    chosen = "the key given with --key" if isinstance(trusted, str) else "the key the signature file names"
    if not valid:
        return SignatureCheck(True, False, f"KMS says the {algorithm} signature does not match manifest.json "
                                           f"and {chosen} ({key_id}): the manifest was changed after it was signed, "
                                           "or signed with another key", algorithm, key_id, isinstance(trusted, str))
    if isinstance(trusted, str):
        return SignatureCheck(True, True, f"valid {algorithm} signature by KMS key {key_id} (given with --key)",
                              algorithm, key_id, True)
    return SignatureCheck(True, True, f"valid {algorithm} signature by KMS key {key_id}, the key the signature file "
                                      "names: make sure it is yours, or pass --key kms:KEY_ID", algorithm, key_id)


def load_public_key(path: Path) -> Any:
    """A public key file for ``rmsops verify --key`` (PEM, or DER as ``aws kms get-public-key`` gives it)."""
    data = _read_key_file(path, "public key")
    try:
        key = (serialization.load_pem_public_key(data) if b"-----BEGIN" in data
               else serialization.load_der_public_key(data))
    except (ValueError, UnsupportedAlgorithm):
        if b"PRIVATE KEY" in data:
            raise UserError(f"--key {path}: this is a private key; pass its public key "
                            f"(`openssl pkey -in {path} -pubout -out {path}.pub`)") from None
        raise UserError(f"--key {path}: not a PEM or DER public key; pass the signing key's public key "
                        "(`openssl pkey -in KEY -pubout`, or `aws kms get-public-key`)") from None
    if not isinstance(key, Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise UserError(f"--key {path}: {_kind(key)} key; bundles are signed with Ed25519, ECC or RSA keys")
    return key


def fingerprint(public_key: Any) -> str:
    """``sha256:`` and the hex SHA-256 of the key's DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"sha256:{hashlib.sha256(der).hexdigest()}"


# --- helpers --------------------------------------------------------------------------------------


def load_trusted_key(public_key: Path | str | None) -> Any:
    """``verify --key``: None, a KMS key id (str, from ``kms:KEY_ID``) or a loaded public key; a UserError if bad."""
    if public_key is None:
        return None
    if isinstance(public_key, str) and public_key.startswith(KMS_PREFIX):
        return _kms_key_id(public_key)
    return load_public_key(Path(public_key))


def _manifest_bytes(folder: Path) -> bytes:
    try:
        return (folder / MANIFEST).read_bytes()
    except OSError:
        raise UserError(f"{folder} is not an rmsops bundle (no readable {MANIFEST})") from None


def _key_path(spec: str) -> Path:
    if not spec.strip():
        raise UserError(f"--sign needs an Ed25519 private key file or kms:KEY_ID ({_NEW_KEY})")
    return Path(spec).expanduser()


def _kms_key_id(spec: str) -> str:
    key_id = spec.removeprefix(KMS_PREFIX)
    if not _KMS_KEY_ID.fullmatch(key_id):
        raise UserError(f"{spec[:120]!r}: expected kms: and a key id, key ARN, alias/NAME or alias ARN, "
                        "e.g. kms:alias/rmsops-bundles")
    return key_id


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        hint = _NEW_KEY if what == "private key" else "pass the path of the signing key's public key"
        raise UserError(f"{what} {path}: no such file; {hint}") from None
    except OSError as exc:
        raise UserError(f"{what} {path}: cannot read it ({exc.strerror or exc}); check the path and its "
                        "permissions") from None
    return data


def _load_private_key(path: Path) -> Ed25519PrivateKey:
    data = _read_key_file(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # encrypted
        raise UserError(f"signing key {path} is encrypted; rmsops needs an unencrypted PKCS8 PEM key "
                        f"(`openssl pkey -in {path} -out PLAIN.pem`, and keep that file private)") from None
    except (ValueError, UnsupportedAlgorithm):
        if b"PUBLIC KEY" in data:
            raise UserError(f"signing key {path} is a public key; --sign needs the private key "
                            "(verify takes the public one with --key)") from None
        raise UserError(f"signing key {path} is not a PEM PKCS8 private key; {_NEW_KEY}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(f"signing key {path} is {_kind(key)} key, not Ed25519; {_NEW_KEY}, or sign with an "
                        "RSA or ECC key in KMS (kms:KEY_ID)")
    return key


def _kind(key: Any) -> str:
    """'an RSA', 'an EC', 'a DSA'... for the messages."""
    from cryptography.hazmat.primitives.asymmetric import dsa, ed448, x448, x25519

    kinds = ((rsa.RSAPrivateKey, rsa.RSAPublicKey, "an RSA"), (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey,
             "an EC"), (dsa.DSAPrivateKey, dsa.DSAPublicKey, "a DSA"), (ed448.Ed448PrivateKey, ed448.Ed448PublicKey,
             "an Ed448"), (x25519.X25519PrivateKey, x25519.X25519PublicKey, "an X25519"),
             (x448.X448PrivateKey, x448.X448PublicKey, "an X448"),
             (Ed25519PrivateKey, Ed25519PublicKey, "an Ed25519"))
    return next((name for private, public, name in kinds if isinstance(key, private | public)), "an unknown")


def _digest(manifest: bytes, algorithm: str) -> bytes:
    digest = hashes.Hash(DIGESTS[algorithm]())
    digest.update(manifest)
    return digest.finalize()


def _one_line(value: object) -> str:
    return " ".join(str(value).split())[:300]


def _aws_message(exc: Any) -> str:
    return _one_line(exc.response.get("Error", {}).get("Message", ""))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _default_kms_client(key_id: str) -> Callable[[], Any]:
    """boto3's KMS client, in the Region of the key's ARN when it has one (else the configured Region)."""
    def make() -> Any:
        import boto3
        from botocore.config import Config

        region = key_id.split(":")[3] if key_id.startswith("arn:") else None
        return boto3.client("kms", region_name=region or None,
                            config=Config(connect_timeout=5, read_timeout=20, retries={"max_attempts": 3}))

    return make
