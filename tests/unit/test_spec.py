"""Every spec error names the file, the key and what is wrong, and maps to exit code 2."""

from pathlib import Path

import pytest
import yaml

from ollama_airgap.cli.main import main
from ollama_airgap.errors import SpecError
from ollama_airgap.spec import load_spec

GOOD = {"name": "demo", "ollama": {"version": "0.13.5", "architectures": ["amd64"]}, "models": ["tinyllama:latest"]}


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def with_(**changes: object) -> dict:
    spec = yaml.safe_load(yaml.safe_dump(GOOD))
    spec.update(changes)
    return spec


def test_good_spec_loads(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, GOOD), {"registry.ollama.ai": "http://127.0.0.1:1"})
    assert spec.ollama.version == "0.13.5"
    assert spec.models[0].short == "tinyllama:latest"
    assert spec.mirror_for("registry.ollama.ai") == "http://127.0.0.1:1"
    assert spec.mirror_for("github.com") == "https://github.com"


@pytest.mark.parametrize(
    ("data", "key", "problem"),
    [
        (with_(colour="red"), "colour", "unknown key"),
        (with_(models=["bad name"]), "models[0]", "whitespace"),
        (with_(models=["a/b/c/d"]), "models[0]", "too many"),
        (with_(models="llama3"), "models", "must be a list"),
        (with_(models=["x", "library/x:latest"]), "models[1]", "already listed"),
        (with_(ollama={"version": "latest"}), "ollama.version", "not a release version"),
        (with_(ollama={"version": 0.13}), "ollama.version", "quote it"),
        (with_(ollama={"version": "0.13.5", "architectures": ["s390x"]}), "ollama.architectures[0]", "unknown"),
        (with_(ollama={"version": "0.13.5", "architectures": []}), "ollama.architectures", "at least one"),
        (with_(ollama={"version": "0.13.5", "rocm": "yes"}), "ollama.rocm", "true or false"),
        (with_(ollama={"version": "0.13.5", "gpu": True}), "ollama.gpu", "unknown key"),
        (with_(name="bad name!"), "name", "letters"),
        (with_(mirrors={"registry.ollama.ai": "ftp://x"}), "mirrors.registry.ollama.ai", "not an http"),
        (with_(models=[]), "models", "names no model"),
        (
            with_(local_models=[{"name": "m:1", "gguf": "missing.gguf", "template": "x"}]),
            "local_models[0].gguf",
            "does not exist",
        ),
        (with_(store_models=[{"path": "/nonexistent", "models": ["x"]}]), "store_models[0].path", "not an ollama"),
    ],
)
def test_spec_errors_name_file_and_key(tmp_path: Path, data: dict, key: str, problem: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert problem in message
    assert "\n" not in message


def test_local_model_needs_template_or_modelfile(tmp_path: Path) -> None:
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    path = write(tmp_path, with_(local_models=[{"name": "m:1", "gguf": "m.gguf"}]))
    with pytest.raises(SpecError, match=r"local_models\[0\]: give exactly one of 'modelfile' or 'template'"):
        load_spec(path)


def test_invalid_yaml_and_empty(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="invalid YAML"):
        load_spec(write(tmp_path, "name: [unclosed"))
    with pytest.raises(SpecError, match="empty"):
        load_spec(write(tmp_path, ""))


def test_cli_exits_2_with_one_line_before_any_download(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, with_(models=["bad name"]))
    code = main(["build", str(path), "--cache", str(tmp_path / "cache"), "-o", str(tmp_path / "out.tar")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "models[0]" in err
    assert not (tmp_path / "cache").exists()
    assert not (tmp_path / "out.tar").exists()


def test_cli_bad_mirror_flag(tmp_path: Path) -> None:
    assert main(["build", str(write(tmp_path, GOOD)), "--mirror", "nonsense"]) == 2


def test_binary_and_control_characters(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec(path)
    path.write_text("\x1f")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert "\n" not in str(info.value)
