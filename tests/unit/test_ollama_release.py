"""Which ollama release archives a spec carries, and how sha256sum.txt is read (bundle side, no test bed hosts).

The release tree is the test bed's (testbed.releases), served over loopback HTTP by Python's http.server and read
by the project's real Fetcher.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from ollama_airgap.download import Fetcher
from ollama_airgap.errors import NotFoundError, SpecError, VerifyError
from ollama_airgap.ollama_release import ReleaseFetcher, asset_names, parse_asset_name, parse_sha256sums
from ollama_airgap.spec import load_spec
from testbed import config
from testbed.releases import ReleaseTree, build_release_tree

HEX = "ab" * 32
AMD, ARM = "ollama-linux-amd64", "ollama-linux-arm64"


# --- asset selection ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "options", "expected"),
    [
        ("amd64", {}, ["ollama-linux-amd64"]),
        ("amd64", {"rocm": True}, ["ollama-linux-amd64", "ollama-linux-amd64-rocm"]),
        ("amd64", {"mlx": True, "rocm": True}, [AMD, AMD + "-rocm", AMD + "-mlx"]),
        ("amd64", {"jetpack": (5, 6)}, ["ollama-linux-amd64"]),  # no jetpack builds for amd64
        ("arm64", {"rocm": True, "mlx": True}, ["ollama-linux-arm64"]),  # no ROCm or MLX builds for arm64
        ("arm64", {"jetpack": (6,)}, ["ollama-linux-arm64", "ollama-linux-arm64-jetpack6"]),
        ("arm64", {"jetpack": (6, 5)}, [ARM, ARM + "-jetpack5", ARM + "-jetpack6"]),
    ],
)  # fmt: skip
def test_asset_names_base_first_then_overlays(arch: str, options: dict, expected: list[str]) -> None:
    assert asset_names(arch, **options) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ollama-linux-amd64.tgz", ("amd64", "")),
        ("ollama-linux-amd64.tar.zst", ("amd64", "")),
        ("ollama-linux-amd64-rocm.tar.zst", ("amd64", "rocm")),
        ("ollama-linux-amd64-mlx.tar.zst", ("amd64", "mlx")),
        ("ollama-linux-arm64-jetpack5.tgz", ("arm64", "jetpack5")),
    ],
)
def test_parse_asset_name(name: str, expected: tuple[str, str]) -> None:
    assert parse_asset_name(name) == expected


@pytest.mark.parametrize("name", ["ollama-darwin.tgz", "ollama-linux-amd64-cuda.tar.zst", "ollama-linux-amd64.zip"])
def test_parse_asset_name_refuses_others(name: str) -> None:
    with pytest.raises(ValueError, match="not an ollama Linux release archive"):
        parse_asset_name(name)


# --- sha256sum.txt -----------------------------------------------------------------------------------------------


def test_sha256sums_dot_slash_lines() -> None:
    text = (
        f"{HEX}  ./ollama-linux-amd64.tar.zst\n{HEX.upper()}  ./ollama-linux-amd64-mlx.tar.zst\n\n{HEX} *dist/x.tgz\n"
    )
    assert parse_sha256sums(text, "sums") == {
        "ollama-linux-amd64.tar.zst": HEX,
        "ollama-linux-amd64-mlx.tar.zst": HEX,
        "x.tgz": HEX,
    }


@pytest.mark.parametrize("line", ["abc  ./ollama-linux-amd64.tgz", f"{HEX}", f"{HEX}  two names"])
def test_sha256sums_bad_line_is_one_line_error(line: str) -> None:
    with pytest.raises(VerifyError, match=r"^u: line 2 is not '<sha256>  <file>'$"):
        parse_sha256sums(f"{HEX}  ./a.tgz\n{line}\n", "u")


def test_testbed_sha256sum_lists_every_archive(tmp_path: Path) -> None:
    tree = build_release_tree(tmp_path, versions=[config.OLLAMA_VERSION_CURRENT])
    text = tree.checksum_file(config.OLLAMA_VERSION_CURRENT).read_text()
    assert all(line.split("  ")[1].startswith("./") for line in text.splitlines())
    assert parse_sha256sums(text, "sums") == {a.filename: a.sha256 for a in tree.assets}
    assert {parse_asset_name(a.filename) for a in tree.assets} == {
        ("amd64", ""), ("amd64", "rocm"), ("amd64", "mlx"), ("arm64", ""), ("arm64", "jetpack5"), ("arm64", "jetpack6"),
    }  # fmt: skip


# --- resolving against a served release tree ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ReleaseTree]]:
    root = tmp_path_factory.mktemp("www")
    tree = build_release_tree(root)
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", tree
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("version", "flavour", "expected"),
    [
        (config.OLLAMA_VERSION_TGZ, "ollama-linux-amd64", "ollama-linux-amd64.tgz"),
        (config.OLLAMA_VERSION_ZST, "ollama-linux-amd64", "ollama-linux-amd64.tar.zst"),
        (config.OLLAMA_VERSION_CURRENT, "ollama-linux-amd64-mlx", "ollama-linux-amd64-mlx.tar.zst"),
        (config.OLLAMA_VERSION_CURRENT, "ollama-linux-arm64-jetpack5", "ollama-linux-arm64-jetpack5.tar.zst"),
    ],
)
def test_resolve_picks_zst_then_tgz(served: tuple[str, ReleaseTree], version: str, flavour: str, expected: str) -> None:
    base, tree = served
    releases = ReleaseFetcher(base, Fetcher())
    _, sums = releases.sha256sums(version)
    release = releases.resolve(version, flavour, sums)
    asset = next(a for a in tree.assets if a.version == version and a.filename == expected)
    assert (release.name, release.sha256, release.size) == (expected, asset.sha256, asset.size)
    assert release.arch == asset.arch and release.variant == asset.flavour


def test_resolve_refuses_archive_missing_from_sums(served: tuple[str, ReleaseTree]) -> None:
    base, _ = served
    releases = ReleaseFetcher(base, Fetcher())
    _, sums = releases.sha256sums(config.OLLAMA_VERSION_CURRENT)
    del sums["ollama-linux-amd64-rocm.tar.zst"]
    with pytest.raises(VerifyError, match=r"ollama-linux-amd64-rocm\.tar\.zst is not listed in its sha256sum\.txt"):
        releases.resolve(config.OLLAMA_VERSION_CURRENT, "ollama-linux-amd64-rocm", sums)


def test_resolve_mlx_missing_from_old_release(served: tuple[str, ReleaseTree]) -> None:
    base, _ = served
    releases = ReleaseFetcher(base, Fetcher())
    _, sums = releases.sha256sums(config.OLLAMA_VERSION_ZST)
    with pytest.raises(NotFoundError, match=r"none of ollama-linux-amd64-mlx\.tar\.zst, ollama-linux-amd64-mlx\.tgz"):
        releases.resolve(config.OLLAMA_VERSION_ZST, "ollama-linux-amd64-mlx", sums)


# --- spec keys ---------------------------------------------------------------------------------------------------


def _spec(tmp_path: Path, **ollama: object) -> Path:
    data = {"name": "r", "ollama": {"version": "0.35.1", **ollama}, "models": ["tinyllama:latest"]}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_spec_overlays_load(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path, architectures=["amd64", "arm64"], rocm=True, mlx=True, jetpack=[5, 6]))
    assert (spec.ollama.rocm, spec.ollama.mlx, spec.ollama.jetpack) == (True, True, (5, 6))
    assert load_spec(_spec(tmp_path, architectures=["arm64"], jetpack=6)).ollama.jetpack == (6,)
    defaults = load_spec(_spec(tmp_path)).ollama
    assert (defaults.rocm, defaults.mlx, defaults.jetpack) == (False, False, ())


@pytest.mark.parametrize(
    ("ollama", "key", "problem"),
    [
        ({"mlx": "yes"}, "ollama.mlx", "must be true or false, got 'yes'"),
        ({"mlx": True, "architectures": ["arm64"]}, "ollama.mlx", "MLX builds exist for amd64 only"),
        ({"mlx": True, "version": "0.14.1"}, "ollama.mlx", "0.14.1 has no -mlx archive (it exists from 0.23.1 on)"),
        ({"jetpack": 5}, "ollama.jetpack", "JetPack builds exist for arm64 only; add arm64 to architectures"),
        ({"jetpack": 7, "architectures": ["arm64"]}, "ollama.jetpack", "JetPack 5 or 6 (or a list of them), got 7"),
        ({"jetpack": [5, "6"], "architectures": ["arm64"]}, "ollama.jetpack[1]", "got '6'"),
        ({"jetpack": [True], "architectures": ["arm64"]}, "ollama.jetpack[0]", "got True"),
        ({"jetpack": [6, 6], "architectures": ["arm64"]}, "ollama.jetpack[1]", "JetPack 6 is listed twice"),
        ({"rocm": True, "architectures": ["arm64"]}, "ollama.rocm", "ROCm builds exist for amd64 only"),
        ({"cuda": True}, "ollama.cuda", "unknown key (allowed: architectures, jetpack, mlx, rocm, version)"),
    ],
)  # fmt: skip
def test_spec_overlay_errors_name_the_key(tmp_path: Path, ollama: dict, key: str, problem: str) -> None:
    path = _spec(tmp_path, **ollama)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}: ") and problem in message and "\n" not in message
