"""Ed25519 signatures over bundle.yaml (which lists every file with its sha256, so it vouches for them all).

Keys are PEM (PKCS#8 private, SubjectPublicKeyInfo public) and the signature is the raw 64 bytes in
``bundle.yaml.sig``, so a host can check it offline with nothing but OpenSSL 3:

    openssl pkeyutl -verify -pubin -inkey bundle-signing.pub -rawin -in bundle.yaml -sigfile bundle.yaml.sig
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import SpecError, VerifyError

SIGNATURE_NAME = "bundle.yaml.sig"
__all__ = [
    "SIGNATURE_NAME",
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "check_signature",
    "generate_keypair",
    "load_private_key",
    "load_public_key",
    "sign",
]


def generate_keypair(private_path: Path) -> Path:
    """Write a new private key (mode 0600, never overwritten) and its public key beside it as ``<name>.pub``."""
    public_path = private_path.with_name(private_path.name + ".pub")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SpecError(f"{private_path}: already exists; not overwriting a signing key") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem)
    public_path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return public_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SpecError(f"{path}: not a readable unencrypted PEM private key ({type(exc).__name__})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SpecError(f"{path}: not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise SpecError(f"{path}: not a readable PEM public key ({type(exc).__name__})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SpecError(f"{path}: not an Ed25519 public key")
    return key


def sign(manifest: bytes, key: Ed25519PrivateKey) -> bytes:
    return key.sign(manifest)


def check_signature(manifest: bytes, signature: bytes | None, key: Ed25519PublicKey, source: str) -> None:
    if signature is None:
        raise VerifyError(f"{source}: bundle is not signed ({SIGNATURE_NAME} missing) but a signing key is required")
    try:
        key.verify(signature, manifest)
    except InvalidSignature:
        raise VerifyError(f"{source}: {SIGNATURE_NAME} does not match bundle.yaml (altered or another key)") from None
