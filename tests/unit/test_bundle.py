"""Pack, verify, split and join on local files: the archive is a real tar that `sha256sum -c` and tar accept."""

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from ollama_airgap.bundle import Entry, manifest_bytes, pack, sums_text, verify_archive, verify_dir
from ollama_airgap.cli.main import main
from ollama_airgap.errors import VerifyError
from ollama_airgap.hashing import sha256_file
from ollama_airgap.progress import Reporter
from ollama_airgap.split import join, parse_size, split

QUIET = Reporter(enabled=False)


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    blob = tmp_path / "blob"
    blob.write_bytes(bytes(range(256)) * 5000 + b"tail")
    entries = [
        Entry.from_bytes("modelfiles/x.Modelfile", b"FROM ../models/blobs/sha256-x\n"),
        Entry("models/blobs/sha256-" + sha256_file(blob), blob.stat().st_size, sha256_file(blob), blob),
    ]
    sums = sums_text(entries)
    out = tmp_path / "b.tar"
    pack(out, manifest_bytes({"name": "t"}, entries, sums), sums, entries, 1_700_000_000, QUIET)
    return out


def test_archive_is_a_plain_tar_that_sha256sum_accepts(archive: Path, tmp_path: Path) -> None:
    assert verify_archive(archive, QUIET).ok
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(dest)], check=True)
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=dest, check=True)
    assert verify_dir(dest, QUIET).ok
    with tarfile.open(archive) as tar:
        assert tar.getnames()[:2] == ["bundle.yaml", "SHA256SUMS"]


def test_one_flipped_byte_is_caught(archive: Path) -> None:
    data = bytearray(archive.read_bytes())
    data[-20000] ^= 0x01
    archive.write_bytes(bytes(data))
    report = verify_archive(archive, QUIET)
    assert not report.ok and "models/blobs/sha256-" in report.problems[0] and "altered" in report.problems[0]
    assert main(["verify", str(archive), "-q"]) == 3


def test_dir_refuses_missing_altered_unlisted(archive: Path, tmp_path: Path) -> None:
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(dest)], check=True)
    (dest / "extra").write_text("surprise")
    (dest / "modelfiles/x.Modelfile").write_text("FROM evil\n")
    blob = next((dest / "models/blobs").iterdir())
    blob.unlink()
    problems = " | ".join(verify_dir(dest, QUIET).problems)
    assert "extra is not listed" in problems
    assert "modelfiles/x.Modelfile is altered" in problems
    assert f"models/blobs/{blob.name} is missing" in problems


def test_hostile_members_refused(tmp_path: Path, archive: Path) -> None:
    hostile = tmp_path / "hostile.tar"
    with tarfile.open(archive) as src, tarfile.open(hostile, "w", format=tarfile.PAX_FORMAT) as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member))
        for name, kind in (
            ("../escape", tarfile.REGTYPE),
            ("/etc/passwd", tarfile.REGTYPE),
            ("link", tarfile.SYMTYPE),
            ("hardlink", tarfile.LNKTYPE),
            ("dev", tarfile.CHRTYPE),
        ):
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "/etc/shadow" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
            dst.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    problems = " | ".join(verify_archive(hostile, QUIET).problems)
    assert "unsafe path '../escape'" in problems
    assert "unsafe path '/etc/passwd'" in problems
    assert "link is a link" in problems
    assert "hardlink is a link" in problems
    assert "dev is a device" in problems


def test_trailing_data_refused(archive: Path) -> None:
    with open(archive, "ab") as handle:
        handle.write(b"x" * 100_000)
    with pytest.raises(VerifyError, match="past the end of the archive"):
        verify_archive(archive, QUIET).raise_for_problems()


def test_split_join_roundtrip_and_tamper(archive: Path, tmp_path: Path) -> None:
    index = split(archive, 300_000, tmp_path / "parts", QUIET)
    parts = sorted((tmp_path / "parts").glob("b.tar.part-*"))
    assert len(parts) >= 4
    joined = join(index, tmp_path / "joined.tar", QUIET)
    assert joined.read_bytes() == archive.read_bytes()
    data = bytearray(parts[1].read_bytes())
    data[10] ^= 0xFF
    parts[1].write_bytes(bytes(data))
    with pytest.raises(VerifyError, match="part-001: part is altered"):
        join(index, tmp_path / "again.tar", QUIET)
    assert not (tmp_path / "again.tar").exists() and not (tmp_path / "again.tar.partial").exists()


def test_parse_size() -> None:
    assert parse_size("4G") == 4 << 30
    assert parse_size("700M") == 700 << 20
    assert parse_size("4GiB") == 4 << 30
    assert parse_size("1048576") == 1 << 20
