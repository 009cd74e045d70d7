"""The ollama stand-in against the official `ollama` Python client, its own CLI and plain HTTP."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np
import ollama
import pytest
import requests

from testbed import ollama_standin
from testbed.standin_server import Standin, free_port, zipapp_bytes

VERSION = "0.13.5"
CHAT_TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}<|assistant|>"
WORDS = [
    "air", "gap", "model", "bundle", "host", "cache", "digest", "layer", "blob", "tag", "mirror", "registry",
    "deploy", "verify", "install", "import", "smoke", "test", "stand", "in", "llama", "token", "vocab", "prompt",
    "reply", "stream", "chunk", "done", "reason", "length", "stop", "keep", "alive", "load", "unload", "create",
    "list", "show", "delete", "copy", "pull", "push", "serve", "version",
]  # fmt: skip
CONTROL_TOKENS = ["<unk>", "<s>", "</s>", "<|end|>"]


def write_tiny_gguf(path: Path, name: str = "tiny") -> Path:
    """A small llama-architecture GGUF with a sentencepiece-style vocabulary and a chat template."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_context_length(256)
    writer.add_embedding_length(8)
    writer.add_block_count(1)
    writer.add_head_count(2)
    writer.add_feed_forward_length(16)
    writer.add_file_type(1)  # F16
    writer.add_tokenizer_model("llama")
    tokens = CONTROL_TOKENS + ["\u2581" + word for word in WORDS] + ["<0x0A>"]
    types = [gguf.TokenType.CONTROL] * len(CONTROL_TOKENS)
    types += [gguf.TokenType.NORMAL] * len(WORDS) + [gguf.TokenType.BYTE]
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_scores([0.0] * len(tokens))
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template(CHAT_TEMPLATE)
    writer.add_tensor("token_embd.weight", np.ones((len(tokens), 8), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def script(standin_script: Path) -> Path:
    return standin_script


@pytest.fixture
def start_standin(start_standin_server: Callable[..., Standin]) -> Callable[..., Standin]:
    return start_standin_server


@pytest.fixture
def standin(start_standin: Callable[..., Standin]) -> Standin:
    return start_standin()


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> Path:
    return write_tiny_gguf(tmp_path / "tiny.gguf")


def create_with_client(server: Standin, model_file: Path, name: str = "tiny:latest") -> None:
    client = server.client()
    digest = client.create_blob(model_file)
    progress = list(
        client.create(
            model=name,
            files={"tiny.gguf": digest},
            template="{{ .System }} {{ .Prompt }}",
            system="You are a stand-in.",
            parameters={"stop": ["<|end|>", "deploy"], "temperature": 0.5, "num_ctx": 512},
            license="MIT",
            stream=True,
        )
    )
    statuses = [item.status for item in progress]
    assert f"using existing layer {digest}" in statuses
    assert statuses[0] == "parsing GGUF"
    assert statuses[-2:] == ["writing manifest", "success"]


def manifest_file(models: Path, model: str, tag: str = "latest") -> Path:
    return models / "manifests" / "registry.ollama.ai" / "library" / model / tag


# ---------------------------------------------------------------------------------------------------------------------


def test_zipapp_bakes_version_and_runs_with_system_python(script: Path) -> None:
    assert script.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    assert script.stat().st_mode & 0o777 == 0o755
    with zipfile.ZipFile(script) as bundle:
        assert bundle.read("ollama_standin/_version.py").decode() == f'VERSION = "{VERSION}"\n'
        assert "ollama_standin/IMITATES.md" in bundle.namelist()
    assert zipapp_bytes(VERSION) == script.read_bytes()  # reproducible
    with pytest.raises(ValueError):
        zipapp_bytes("1.0; rm -rf /")
    env = {"PATH": "/usr/bin:/bin", "OLLAMA_HOST": f"127.0.0.1:{free_port()}"}
    result = subprocess.run(["/usr/bin/python3", str(script), "--version"], env=env, capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "Warning: could not connect to a running Ollama instance",
        f"Warning: client version is {VERSION}",
    ]


def test_host_and_name_parsing() -> None:
    parse = ollama_standin.parse_host
    assert parse("").hostport == "127.0.0.1:11434"
    assert (parse(":8080").host, parse(":8080").port) == ("", 8080)  # every interface, like Go
    assert parse("0.0.0.0").hostport == "0.0.0.0:11434"
    assert parse("http://example.com").hostport == "example.com:80"
    assert parse("https://example.com").url() == "https://example.com:443"
    assert parse("[::1]:9000").hostport == "[::1]:9000"
    name = ollama_standin.parse_name("ghcr.io/acme/coder:7b")
    assert (name.host, name.namespace, name.model, name.tag) == ("ghcr.io", "acme", "coder", "7b")
    assert ollama_standin.parse_name("tiny").display_shortest() == "tiny:latest"
    assert ollama_standin.parse_name("me/tiny").display_shortest() == "me/tiny:latest"
    assert not ollama_standin.parse_name("bad name").is_valid()


def test_client_create_list_show_generate_chat_ps_delete(standin: Standin, tiny_gguf: Path) -> None:
    client = standin.client()
    assert requests.get(f"{standin.url}/api/version", timeout=5).json() == {"version": VERSION}
    create_with_client(standin, tiny_gguf)

    (listed,) = client.list().models
    manifest = manifest_file(standin.models, "tiny")
    assert listed.model == "tiny:latest"
    assert listed.digest == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert listed.details is not None
    assert listed.details.family == "llama" and listed.details.format == "gguf"
    assert listed.details.quantization_level == "F16"
    body = json.loads(manifest.read_bytes())
    assert body["schemaVersion"] == 2 and body["mediaType"] == ollama_standin.MANIFEST_MEDIA_TYPE
    media_types = [layer["mediaType"] for layer in body["layers"]]
    assert media_types[0] == "application/vnd.ollama.image.model"
    for kind in ("template", "system", "license", "params"):
        assert f"application/vnd.ollama.image.{kind}" in media_types
    assert listed.size == sum(layer["size"] for layer in [*body["layers"], body["config"]])
    config_blob = standin.models / "blobs" / body["config"]["digest"].replace(":", "-")
    config = json.loads(config_blob.read_bytes())
    assert config["model_family"] == "llama" and config["rootfs"]["type"] == "layers"
    assert config["rootfs"]["diff_ids"] == [layer["digest"] for layer in body["layers"]]

    shown = client.show("tiny")
    assert shown.template == "{{ .System }} {{ .Prompt }}"
    raw = requests.post(f"{standin.url}/api/show", json={"model": "tiny"}, timeout=10).json()
    assert raw["system"] == "You are a stand-in." and raw["license"] == "MIT"  # not in the client's ShowResponse
    assert 'stop                           "<|end|>"' in (shown.parameters or "")
    assert shown.modelinfo is not None
    assert shown.modelinfo["general.architecture"] == "llama"
    assert shown.modelinfo["llama.context_length"] == 256
    assert shown.modelinfo["general.parameter_count"] == len(CONTROL_TOKENS + WORDS) * 8 + 8
    assert "tokenizer.chat_template" not in shown.modelinfo
    assert "PARAMETER stop <|end|>" in (shown.modelfile or "")

    words = {" " + word for word in WORDS} | set(WORDS)
    chunks = list(client.generate("tiny", "hello there", stream=True, options={"num_predict": 4, "stop": []}))
    assert chunks[-1].done and chunks[-1].done_reason == "length" and chunks[-1].eval_count == 4
    assert len(chunks) == 5
    assert all((chunk.response or "") in words for chunk in chunks[:-1])
    whole = client.generate("tiny", "hello there", stream=False, options={"num_predict": 4, "stop": []})
    assert whole.response == "".join(chunk.response or "" for chunk in chunks)
    assert whole.prompt_eval_count and whole.total_duration and whole.eval_duration

    reply = client.chat("tiny", messages=[{"role": "user", "content": "hi"}], options={"num_predict": 3})
    assert reply.done and reply.message.role == "assistant" and reply.message.content
    assert len(reply.message.content.split()) <= 3

    (running,) = client.ps().models
    assert running.model == "tiny:latest" and running.size == listed.size and running.size_vram == 0
    assert running.digest == listed.digest
    unloaded = client.generate("tiny", "", keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert client.ps().models == []

    client.delete("tiny")
    assert client.list().models == []
    assert list((standin.models / "blobs").iterdir()) == []


def test_fake_gpu_reports_model_in_vram(start_standin: Callable[..., Standin], tiny_gguf: Path) -> None:
    server = start_standin(OLLAMA_STANDIN_FAKE_GPU="1")
    assert "inference compute" in server.log.read_text() and "Stand-in Fake GPU" in server.log.read_text()
    create_with_client(server, tiny_gguf)
    client = server.client()
    assert client.generate("tiny", "").done_reason == "load"
    (running,) = client.ps().models
    assert running.size and running.size_vram == running.size


def test_cli_create_list_show_rm_version(standin: Standin, tiny_gguf: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    (workdir / "weights").mkdir(parents=True)
    shutil.copy(tiny_gguf, workdir / "weights" / "tiny.gguf")
    (workdir / "Modelfile").write_text(
        "# a comment\n"
        "FROM ./weights/tiny.gguf\n"
        'TEMPLATE """{{ if .System }}<|system|>{{ .System }}<|end|>{{ end }}\n'
        '<|user|>{{ .Prompt }}<|end|><|assistant|>"""\n'
        "PARAMETER stop <|end|>\n"
        "PARAMETER stop <|user|>\n"
        "PARAMETER num_ctx 1024\n"
        "SYSTEM You are terse.\n"
        "MESSAGE user Is this air-gapped?\n"
        "MESSAGE assistant yes\n"
    )
    created = standin.cli("create", "cli-model", "-f", "Modelfile", cwd=workdir)
    assert created.returncode == 0, created.stderr
    assert created.stderr.strip().endswith("success")

    listed = standin.cli("list")
    assert listed.returncode == 0
    header, row = listed.stdout.splitlines()
    assert header.split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    digest = hashlib.sha256(manifest_file(standin.models, "cli-model").read_bytes()).hexdigest()
    assert row.split()[:2] == ["cli-model:latest", digest[:12]]

    shown = standin.cli("show", "cli-model", "--modelfile")
    assert shown.returncode == 0
    assert shown.stdout.startswith('# Modelfile generated by "ollama show"')
    assert "# FROM cli-model:latest" in shown.stdout
    blob_path = standin.models / "blobs" / ("sha256-" + hashlib.sha256(tiny_gguf.read_bytes()).hexdigest())
    assert f"FROM {blob_path}" in shown.stdout
    assert "PARAMETER stop <|end|>\nPARAMETER stop <|user|>" in shown.stdout
    assert "MESSAGE user Is this air-gapped?" in shown.stdout
    assert "SYSTEM You are terse." in shown.stdout
    assert 'TEMPLATE """{{ if .System }}' not in shown.stdout  # no quote chars inside -> "..." quoting
    assert 'TEMPLATE "{{ if .System }}<|system|>' in shown.stdout
    template = standin.cli("show", "cli-model", "--template")
    assert (
        template.stdout
        == "{{ if .System }}<|system|>{{ .System }}<|end|>{{ end }}\n<|user|>{{ .Prompt }}<|end|><|assistant|>"
    )
    assert standin.cli("show", "cli-model", "--system").stdout == "You are terse."
    params = standin.cli("show", "cli-model", "--parameters").stdout
    assert "num_ctx                        1024" in params

    # A model FROM an existing model, and FROM a blob path (the restore case: blobs/sha256-<hex>).
    (workdir / "Derived").write_text("FROM cli-model\nSYSTEM Derived.\n")
    assert standin.cli("create", "derived", "-f", str(workdir / "Derived")).returncode == 0
    derived = requests.post(f"{standin.url}/api/show", json={"model": "derived"}, timeout=10).json()
    assert derived["system"] == "Derived." and derived["details"]["parent_model"] == "cli-model:latest"
    (workdir / "FromBlob").write_text(f"FROM {blob_path}\n")
    assert standin.cli("create", "from-blob", "-f", str(workdir / "FromBlob")).returncode == 0

    version = standin.cli("--version")
    assert version.stdout.strip() == f"ollama version is {VERSION}"
    removed = standin.cli("rm", "cli-model")
    assert removed.returncode == 0 and removed.stdout.strip() == "deleted 'cli-model'"
    missing = standin.cli("rm", "cli-model")
    assert missing.returncode == 1 and missing.stderr.strip() == "Error: model 'cli-model' not found"
    assert blob_path.exists()  # still used by derived and from-blob


def test_cli_errors_without_server(script: Path, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "OLLAMA_HOST": f"127.0.0.1:{free_port()}", "HOME": str(tmp_path)}
    result = subprocess.run([str(script), "list"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: could not connect to ollama server, run 'ollama serve' to start it"


def test_legacy_modelfile_create_form(standin: Standin, tiny_gguf: Path) -> None:
    response = requests.post(
        f"{standin.url}/api/create",
        json={"name": "legacy", "modelfile": f"FROM {tiny_gguf}\nPARAMETER stop <|end|>\nSYSTEM old form\n"},
        stream=True,
        timeout=30,
    )
    assert response.status_code == 200
    lines = [json.loads(line) for line in response.iter_lines() if line]
    assert lines[-1] == {"status": "success"}
    assert any(line["status"].startswith("creating new layer sha256:") for line in lines)
    shown = requests.post(f"{standin.url}/api/show", json={"model": "legacy"}, timeout=10).json()
    assert shown["system"] == "old form"
    assert shown["details"]["family"] == "llama"

    digest = "sha256:" + hashlib.sha256(tiny_gguf.read_bytes()).hexdigest()
    at_blob = requests.post(
        f"{standin.url}/api/create",
        json={"model": "legacy-blob", "modelfile": f"FROM @{digest}\n", "stream": False},
        timeout=30,
    )
    assert at_blob.status_code == 200 and at_blob.json() == {"status": "success"}


def test_blob_digest_mismatch_leaves_nothing(standin: Standin, tiny_gguf: Path) -> None:
    wrong = "sha256:" + "0" * 64
    response = requests.post(f"{standin.url}/api/blobs/{wrong}", data=tiny_gguf.read_bytes(), timeout=10)
    assert response.status_code == 400
    assert response.json()["error"].startswith(f'digest mismatch, expected "{wrong}", got "sha256:')
    blobs = standin.models / "blobs"
    assert not blobs.exists() or list(blobs.iterdir()) == []
    assert requests.head(f"{standin.url}/api/blobs/{wrong}", timeout=10).status_code == 404
    assert requests.head(f"{standin.url}/api/blobs/sha256:zz", timeout=10).status_code == 400


def test_non_gguf_from_is_rejected(standin: Standin, tmp_path: Path) -> None:
    not_gguf = tmp_path / "weights.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 definitely not a gguf file")
    client = standin.client()
    digest = client.create_blob(not_gguf)
    with pytest.raises(ollama.ResponseError, match="supplied file was not in GGUF format"):
        client.create(model="bad", files={"weights.gguf": digest})
    (tmp_path / "Modelfile").write_text("FROM ./weights.bin\n")
    shutil.copy(not_gguf, tmp_path / "weights.bin")
    result = standin.cli("create", "bad", "-f", str(tmp_path / "Modelfile"))
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1] == "Error: unknown type"
    assert client.list().models == []


def test_cors_origins(start_standin: Callable[..., Standin]) -> None:
    server = start_standin(OLLAMA_ORIGINS="https://webui.example")
    tags = f"{server.url}/api/tags"
    for origin in ("http://localhost:3000", "https://webui.example", "app://obsidian.md", "http://127.0.0.1"):
        response = requests.get(tags, headers={"Origin": origin}, timeout=5)
        assert response.status_code == 200, origin
        assert response.headers["Access-Control-Allow-Origin"] == origin
    assert requests.get(tags, headers={"Origin": "https://evil.example"}, timeout=5).status_code == 403
    preflight = requests.options(
        f"{server.url}/api/chat",
        headers={"Origin": "https://webui.example", "Access-Control-Request-Method": "POST"},
        timeout=5,
    )
    assert preflight.status_code == 204
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in preflight.headers["Access-Control-Allow-Headers"]

    everyone = start_standin(OLLAMA_ORIGINS="*")
    response = requests.get(f"{everyone.url}/api/tags", headers={"Origin": "https://any.example"}, timeout=5)
    assert response.status_code == 200 and response.headers["Access-Control-Allow-Origin"] == "*"


def test_prune_at_start_and_noprune(start_standin: Callable[..., Standin], tiny_gguf: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    blobs = models / "blobs"
    blobs.mkdir(parents=True)
    orphan = blobs / ("sha256-" + "a" * 64)
    orphan.write_bytes(b"unreferenced")
    empty_dir = models / "manifests" / "registry.ollama.ai" / "library" / "gone"
    empty_dir.mkdir(parents=True)

    kept = start_standin(models=models, OLLAMA_NOPRUNE="1")
    assert orphan.exists() and empty_dir.exists()
    create_with_client(kept, tiny_gguf)

    start_standin(models=models)
    assert not orphan.exists() and not empty_dir.exists()
    manifest = json.loads(manifest_file(models, "tiny").read_bytes())
    for layer in [*manifest["layers"], manifest["config"]]:
        assert (blobs / layer["digest"].replace(":", "-")).exists()


def test_restored_manifest_and_blobs_are_listed_and_usable(
    start_standin: Callable[..., Standin], standin: Standin, tiny_gguf: Path, tmp_path: Path
) -> None:
    create_with_client(standin, tiny_gguf, name="ghcr.io/acme/tiny:v1")
    source = standin.models
    restored = tmp_path / "restored"
    manifest_rel = Path("manifests/ghcr.io/acme/tiny/v1")
    (restored / manifest_rel).parent.mkdir(parents=True)
    shutil.copy(source / manifest_rel, restored / manifest_rel)
    shutil.copytree(source / "blobs", restored / "blobs")

    server = start_standin(models=restored)
    client = server.client()
    (listed,) = client.list().models
    assert listed.model == "ghcr.io/acme/tiny:v1"
    assert listed.digest == hashlib.sha256((restored / manifest_rel).read_bytes()).hexdigest()
    reply = client.generate("ghcr.io/acme/tiny:v1", "restored?", options={"num_predict": 2})
    assert reply.done and reply.eval_count == 2


def test_pull_is_refused_by_the_air_gap(standin: Standin) -> None:
    with pytest.raises(ollama.ResponseError, match="air gap"):
        list(standin.client().pull("llama3.2", stream=True))
