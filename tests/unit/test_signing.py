"""Signed bundles: refused when unsigned or altered with a key configured; the signature checks with stock OpenSSL."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from ollama_airgap.bundle import Entry, manifest_bytes, pack, sums_text, verify_archive, verify_dir
from ollama_airgap.cli.main import main
from ollama_airgap.errors import SpecError, VerifyError
from ollama_airgap.progress import Reporter
from ollama_airgap.signing import generate_keypair, load_private_key, load_public_key, sign

QUIET = Reporter(enabled=False)


def make(tmp_path: Path, key: Path | None, name: str = "b.tar") -> Path:
    entries = [Entry.from_bytes("modelfiles/x.Modelfile", b"FROM x\n")]
    sums = sums_text(entries)
    manifest = manifest_bytes({"name": "t"}, entries, sums)
    signature = sign(manifest, load_private_key(key)) if key else None
    out = tmp_path / name
    pack(out, manifest, sums, entries, 0, QUIET, signature)
    return out


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    private = tmp_path / "signing.key"
    return private, generate_keypair(private)


def test_keygen_writes_0600_key_and_refuses_overwrite(keys: tuple[Path, Path]) -> None:
    private, public = keys
    assert private.stat().st_mode & 0o777 == 0o600
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    with pytest.raises(SpecError, match="already exists"):
        generate_keypair(private)


def test_signed_bundle_verifies_and_openssl_agrees(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    private, public = keys
    archive = make(tmp_path, private)
    assert verify_archive(archive, QUIET, public_key=load_public_key(public)).ok
    assert main(["verify", str(archive), "--key", str(public), "-q"]) == 0
    unpacked = tmp_path / "x"
    unpacked.mkdir()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(unpacked)], check=True)
    assert verify_dir(unpacked, QUIET, public_key=load_public_key(public)).ok
    openssl = subprocess.run(
        [
            "openssl",
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            str(public),
            "-rawin",
            "-in",
            str(unpacked / "bundle.yaml"),
            "-sigfile",
            str(unpacked / "bundle.yaml.sig"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert openssl.returncode == 0 and "Signature Verified Successfully" in openssl.stdout


def test_unsigned_bundle_refused_when_a_key_is_required(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    archive = make(tmp_path, None)
    with pytest.raises(VerifyError, match="not signed"):
        verify_archive(archive, QUIET, public_key=load_public_key(keys[1]))
    assert main(["verify", str(archive), "--key", str(keys[1]), "-q"]) == 3


def test_altered_or_foreign_signature_refused(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    private, public = keys
    other = tmp_path / "other.key"
    generate_keypair(other)
    foreign = make(tmp_path, other, "foreign.tar")
    with pytest.raises(VerifyError, match=r"does not match bundle\.yaml"):
        verify_archive(foreign, QUIET, public_key=load_public_key(public))
    # Re-sign nothing, but change bundle.yaml: the signature no longer matches.
    unpacked = tmp_path / "y"
    unpacked.mkdir()
    with tarfile.open(make(tmp_path, private, "ok.tar")) as tar:
        tar.extractall(unpacked, filter="data")
    manifest = unpacked / "bundle.yaml"
    manifest.write_text(manifest.read_text().replace("name: t", "name: u"))
    with pytest.raises(VerifyError, match=r"does not match bundle\.yaml"):
        verify_dir(unpacked, QUIET, public_key=load_public_key(public))
