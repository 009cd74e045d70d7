"""src/ollama_airgap/wheelhouse.py against the test bed's local PyPI (nginx, PEP 503, sha256 fragments)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ollama_airgap.errors import FetchError, SpecError
from ollama_airgap.wheelhouse import download_wheels, machine_platform, platform_tags
from testbed.pypi_mirror import PypiMirror, start_pypi_mirror


def test_downloads_binary_wheels_with_dependencies_from_the_local_index(
    pypi_mirror: PypiMirror, tmp_path: Path
) -> None:
    wheels = download_wheels(
        ["pytest-testinfra"], tmp_path / "wh", ["3.11"], [machine_platform()], pypi_mirror.index_url
    )
    names = {w.name.split("-")[0].lower() for w in wheels}
    assert {"pytest_testinfra", "pytest", "pluggy", "iniconfig", "packaging"} <= names
    assert all(w.suffix == ".whl" and w.parent == tmp_path / "wh" for w in wheels)
    assert sorted(p.name for p in (tmp_path / "wh").iterdir()) == sorted(w.name for w in wheels)
    log = pypi_mirror.access_log.read_text()
    assert "/simple/pytest-testinfra/" in log  # it asked the local index, not pypi.org


def test_pairs_are_merged_by_file_name(pypi_mirror: PypiMirror, tmp_path: Path) -> None:
    """Two platforms a machine of this kind runs: the pure and the compiled wheels are there once each."""
    platforms = [machine_platform(), "manylinux2014_x86_64"]
    wheels = download_wheels(["pyyaml", "jinja2"], tmp_path / "wh", ["3.11"], platforms, pypi_mirror.index_url)
    names = [w.name for w in wheels]
    assert len(names) == len(set(names))
    assert any(n.startswith("pyyaml-") and "cp311" in n for n in names)
    assert any(n.startswith("jinja2-") and n.endswith("py3-none-any.whl") for n in names)


def test_find_links_alone_means_no_index(pypi_mirror: PypiMirror, tmp_path: Path) -> None:
    wheels = download_wheels(
        ["iniconfig"], tmp_path / "wh", ["3.11"], [machine_platform()], None, [pypi_mirror.files_dir]
    )
    assert [w.name.split("-")[0] for w in wheels] == ["iniconfig"]


def test_a_wheel_that_differs_from_the_index_sha256_is_refused(pypi_mirror: PypiMirror, tmp_path: Path) -> None:
    """pip checks the index's #sha256= fragment: a served file with one byte more is refused, nothing is kept."""
    source = next(pypi_mirror.files_dir.glob("iniconfig-*.whl"))
    copies = [Path(shutil.copy(w, tmp_path / w.name)) for w in pypi_mirror.files_dir.glob("iniconfig-*.whl")]
    tampered = start_pypi_mirror(tmp_path / "pypi", copies)
    try:
        with (tampered.files_dir / source.name).open("ab") as handle:
            handle.write(b"x")
        with pytest.raises(FetchError) as caught:
            download_wheels(["iniconfig"], tmp_path / "wh", ["3.11"], [machine_platform()], tampered.index_url)
    finally:
        tampered.stop()
    assert "hash" in str(caught.value).lower() and "\n" not in str(caught.value)
    assert not list((tmp_path / "wh").glob("*.whl"))


def test_missing_package_is_one_line_naming_the_pair(pypi_mirror: PypiMirror, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"python 3\.11 manylinux.*no-such-package"):
        download_wheels(["no-such-package"], tmp_path / "wh", ["3.11"], [machine_platform()], pypi_mirror.index_url)


@pytest.mark.parametrize(
    ("pythons", "platforms", "message"),
    [(["2.7"], ["manylinux2014_x86_64"], "python version '2.7'"), (["3.11"], ["win_amd64"], "platform 'win_amd64'")],
)
def test_bad_python_or_platform_is_a_spec_error(pythons: list[str], platforms: list[str], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        download_wheels(["pip"], Path("/nonexistent"), pythons, platforms)


def test_platform_tags_cover_older_glibc_and_legacy_aliases() -> None:
    tags = platform_tags("manylinux_2_28_x86_64")
    assert (
        tags[0] == "manylinux_2_28_x86_64"
        and "manylinux_2_17_x86_64" in tags
        and tags.count("manylinux_2_5_x86_64") == 1
    )
    assert {"manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"} <= set(tags)
    arm = platform_tags("manylinux2014_aarch64")
    assert arm[0] == "manylinux_2_17_aarch64" and "manylinux2014_aarch64" in arm and "manylinux1_aarch64" not in arm
