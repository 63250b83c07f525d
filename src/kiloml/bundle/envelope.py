"""Keys and the signed envelope of a model bundle: COSE_Sign1 (RFC 9052) in CBOR.

The envelope is ``COSE_Sign1 = #6.18([protected: bstr .cbor header, unprotected: {},
payload: bstr, signature: bstr])``; the signature is over ``Sig_structure = ["Signature1",
protected, h'', payload]`` (RFC 9052 section 4.4), made and checked by ``cryptography``:
Ed25519 (COSE alg -8, EdDSA) or ECDSA P-256 with SHA-256 (alg -7, ES256; the signature is
r || s, 32 bytes each, as COSE requires, not DER). The protected header holds the algorithm
(label 1), the content type (label 3) and the key id (label 4: the first 8 bytes of the
SHA-256 of the public key's DER SubjectPublicKeyInfo). ``cbor2`` encodes and decodes; the
only thing built here is the four-element ``Sig_structure`` array RFC 9052 defines.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cbor2
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (decode_dss_signature,
                                                             encode_dss_signature)

from kiloml.errors import KilomlError

COSE_SIGN1_TAG = 18
ALG_EDDSA, ALG_ES256 = -8, -7
CONTENT_TYPE = "application/vnd.kiloml.bundle+cbor"
KEY_TYPES = ("ed25519", "ecdsa-p256")


class SignatureError(KilomlError):
    """A bundle's signature does not verify, or it is not a signed kiloml bundle."""


def generate_key(kind: str):
    """A new private key: ``ed25519`` or ``ecdsa-p256``."""
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    raise KilomlError(f"key type {kind!r}: expected one of {', '.join(KEY_TYPES)}")


def private_pem(key) -> bytes:
    """PKCS#8 PEM, unencrypted (keep it where only the signer can read it)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_pem(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def _check_kind(key, path: Path, what: str):
    ok = (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey, ec.EllipticCurvePrivateKey,
          ec.EllipticCurvePublicKey)
    if not isinstance(key, ok) or (isinstance(key, (ec.EllipticCurvePrivateKey,
                                                    ec.EllipticCurvePublicKey))
                                   and not isinstance(key.curve, ec.SECP256R1)):
        kind = getattr(getattr(key, "curve", None), "name", type(key).__name__)
        raise KilomlError(f"{path}: a {kind} key; a bundle {what} is Ed25519 or ECDSA P-256")
    return key


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise KilomlError(f"{path}: cannot read the {what} ({e.strerror or e})") from None


def load_private_key(path: str | Path):
    """The signing key of a PEM file (PKCS#8 or the traditional formats), checked."""
    path = Path(path)
    data = _read(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise KilomlError(f"{path}: the private key is encrypted; give an unencrypted PEM "
                          "(e.g. from `kiloml bundle keygen`)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise KilomlError(f"{path}: not a PEM private key") from None
    return _check_kind(key, path, "signing key")


def load_public_key(path: str | Path):
    """The public key of a PEM file (a SubjectPublicKeyInfo; a private key file also
    works: its public half is used)."""
    path = Path(path)
    data = _read(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        try:
            key = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise KilomlError(f"{path}: not a PEM public key") from None
    return _check_kind(key, path, "public key")


def key_id(public_key) -> bytes:
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).digest()[:8]


def _alg(key) -> int:
    return ALG_EDDSA if isinstance(key, (ed25519.Ed25519PrivateKey,
                                         ed25519.Ed25519PublicKey)) else ALG_ES256


def _to_be_signed(protected: bytes, payload: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected, b"", payload])


def sign(payload: bytes, key) -> bytes:
    """The COSE_Sign1 envelope of ``payload`` signed with the private ``key``."""
    alg = _alg(key)
    protected = cbor2.dumps({1: alg, 3: CONTENT_TYPE, 4: key_id(key.public_key())})
    tbs = _to_be_signed(protected, payload)
    if alg == ALG_EDDSA:
        sig = key.sign(tbs)
    else:
        r, s = decode_dss_signature(key.sign(tbs, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, sig]))


def open_envelope(data: bytes, where: str = "bundle") -> tuple[dict, bytes, bytes, bytes]:
    """(protected header, protected bytes, payload, signature) of a COSE_Sign1 envelope,
    checked for shape only (no signature check)."""
    try:
        obj = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError):
        raise SignatureError(f"{where}: not a CBOR COSE_Sign1 envelope") from None
    if not (isinstance(obj, cbor2.CBORTag) and obj.tag == COSE_SIGN1_TAG
            and isinstance(obj.value, (list, tuple)) and len(obj.value) == 4):
        raise SignatureError(f"{where}: not a COSE_Sign1 envelope (CBOR tag 18, 4 items)")
    protected, _unprotected, payload, sig = obj.value
    if not all(isinstance(x, bytes) for x in (protected, payload, sig)):
        raise SignatureError(f"{where}: malformed COSE_Sign1 (protected, payload and "
                             "signature must be byte strings)")
    try:
        header = cbor2.loads(protected)
    except (cbor2.CBORDecodeError, ValueError, TypeError):
        raise SignatureError(f"{where}: malformed COSE protected header") from None
    if not isinstance(header, dict) or header.get(3) != CONTENT_TYPE:
        raise SignatureError(f"{where}: not a kiloml bundle (content type "
                             f"{header.get(3) if isinstance(header, dict) else None!r})")
    if (set(header) != {1, 3, 4} or header[1] not in (ALG_EDDSA, ALG_ES256)
            or not isinstance(header[4], bytes) or len(header[4]) != 8
            or _unprotected != {}):
        raise SignatureError(f"{where}: malformed COSE header (expected alg -8 or -7, the "
                             "content type, an 8-byte key id, no unprotected fields)")
    if cbor2.dumps(obj) != data:
        raise SignatureError(f"{where}: trailing or non-canonical bytes after the envelope")
    return header, protected, payload, sig


def verify(data: bytes, public_key, where: str = "bundle") -> bytes:
    """The payload of the envelope ``data`` if its signature verifies with ``public_key``;
    SignatureError otherwise."""
    header, protected, payload, sig = open_envelope(data, where)
    alg = _alg(public_key)
    if header.get(1) != alg:
        raise SignatureError(f"{where}: signed with COSE algorithm {header.get(1)}, the public "
                             f"key is for {alg}")
    tbs = _to_be_signed(protected, payload)
    try:
        if alg == ALG_EDDSA:
            public_key.verify(sig, tbs)
        else:
            if len(sig) != 64:
                raise InvalidSignature
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                       int.from_bytes(sig[32:], "big"))
            public_key.verify(der, tbs, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureError(f"{where}: the signature does not verify with this public key "
                             f"(key id {key_id(public_key).hex()}, the bundle's "
                             f"{header.get(4, b'').hex() or 'none'})") from None
    return payload
