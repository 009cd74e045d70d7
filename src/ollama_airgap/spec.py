"""Load and fully validate a bundle spec (bundles/*.yaml) before anything is downloaded.

Every problem is reported as ``FILE: KEY: what is wrong`` and raises SpecError (exit code 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from .container_image import DEFAULT_PLATFORM, ImageReference, parse_image_reference, parse_platform
from .deploy_kit import KitSpec, parse_kit_spec
from .errors import SpecError
from .fleet_kit import FleetSpec, parse_fleet_spec
from .names import ModelName, parse_model_name
from .ollama_release import JETPACKS, MLX_SINCE

SPEC_KEYS = {"name", "ollama", "models", "local_models", "store_models", "images", "mirrors", "deploy_kit", "fleet"}
OLLAMA_KEYS = {"version", "architectures", "rocm", "mlx", "jetpack"}
LOCAL_MODEL_KEYS = {"name", "gguf", "modelfile", "template", "system", "parameters", "license"}
STORE_KEYS = {"path", "models"}
IMAGE_KEYS = {"reference", "platform"}
ARCHITECTURES = ("amd64", "arm64")
VERSION_RE = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-rc[0-9]+)?$")
BUNDLE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PARAMETER_RE = re.compile(r"^[a-z_][a-z0-9_]*$")

DEFAULT_MIRRORS = {
    "registry.ollama.ai": "https://registry.ollama.ai",
    "github.com": "https://github.com",
    "ghcr.io": "https://ghcr.io",
    "docker.io": "https://registry-1.docker.io",
}


@dataclass(frozen=True)
class OllamaRelease:
    version: str
    architectures: tuple[str, ...]
    rocm: bool = False  # carry ollama-linux-amd64-rocm (AMD GPUs)
    mlx: bool = False  # carry ollama-linux-amd64-mlx (the MLX engine; unpacked over the base archive)
    jetpack: tuple[int, ...] = ()  # carry ollama-linux-arm64-jetpack5 / -jetpack6 (NVIDIA Jetson)


@dataclass(frozen=True)
class LocalModel:
    name: ModelName
    gguf: Path
    modelfile: Path | None = None
    template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    license: str | None = None


@dataclass(frozen=True)
class StoreModels:
    path: Path
    models: tuple[ModelName, ...]


@dataclass(frozen=True)
class ImageSpec:
    """A container image to carry (``images:`` entries: a reference string, or {reference, platform})."""

    ref: ImageReference
    platform: str = DEFAULT_PLATFORM


@dataclass(frozen=True)
class Spec:
    path: Path
    name: str
    ollama: OllamaRelease
    models: tuple[ModelName, ...] = ()
    local_models: tuple[LocalModel, ...] = ()
    store_models: tuple[StoreModels, ...] = ()
    images: tuple[ImageSpec, ...] = ()
    mirrors: dict[str, str] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    deploy_kit: KitSpec | None = field(default_factory=KitSpec)  # None: `deploy_kit: false`
    fleet: FleetSpec = field(default_factory=FleetSpec)  # fleet_kit.py: the depot carried in the bundle

    def mirror_for(self, host: str) -> str:
        """Base URL that stands in for an upstream host (``registry.ollama.ai``, ``github.com``, ``ghcr.io``)."""
        return self.mirrors.get(host) or DEFAULT_MIRRORS.get(host) or f"https://{host}"

    def all_model_names(self) -> list[ModelName]:
        names = list(self.models) + [m.name for m in self.local_models]
        for store in self.store_models:
            names.extend(store.models)
        return names


def parse_version(version: str) -> tuple[int, int, int]:
    match = VERSION_RE.match(version)
    if not match:
        raise ValueError(f"{version!r} is not a release version like 0.13.5")
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def _printable(text: str) -> str:
    """User-supplied keys and values may hold newlines or control characters: escape them (errors are one line)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class _Checker:
    """Collects the location of each value so every error names the file and the key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, problem: str) -> SpecError:
        return SpecError(f"{self.path}: {_printable(key)}: {_printable(problem)}")

    def mapping(
        self, value: Any, key: str, allowed: set[str], required: frozenset[str] | set[str] = frozenset()
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a mapping, got {type(value).__name__}")
        for name in value:
            if not isinstance(name, str):
                raise self.fail(key, f"key {name!r} must be a string")
            if name not in allowed:
                raise self.fail(
                    f"{key}.{name}" if key else name, f"unknown key (allowed: {', '.join(sorted(allowed))})"
                )
        for name in sorted(required):
            if name not in value:
                raise self.fail(f"{key}.{name}" if key else name, "is required")
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            hint = " (quote it in YAML)" if isinstance(value, int | float) else ""
            raise self.fail(key, f"must be a non-empty string, got {value!r}{hint}")
        return value

    def sequence(self, value: Any, key: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(key, f"must be a list, got {type(value).__name__}")
        return value

    def model_name(self, value: Any, key: str) -> ModelName:
        text = self.string(value, key)
        try:
            return parse_model_name(text)
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None

    def file(self, value: Any, key: str) -> Path:
        text = self.string(value, key)
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = self.path.parent / path
        if not path.is_file():
            raise self.fail(key, f"file {path} does not exist")
        return path


def load_spec(path: str | Path, mirrors: dict[str, str] | None = None) -> Spec:
    """Read and validate a spec file. ``mirrors`` (from the CLI or environment) override the spec's own."""
    spec_path = Path(path)
    try:
        text = spec_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{spec_path}: cannot read spec: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SpecError(f"{spec_path}: spec is not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "YAML"
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise SpecError(f"{spec_path}: {where}: invalid YAML: {problem}") from None

    return validate_spec(data, spec_path, mirrors)


def validate_spec(data: Any, spec_path: Path, mirrors: dict[str, str] | None = None) -> Spec:
    check = _Checker(spec_path)
    if data is None:
        raise SpecError(f"{spec_path}: the spec is empty")
    top = check.mapping(data, "", SPEC_KEYS, {"name", "ollama"})

    name = check.string(top["name"], "name")
    if not BUNDLE_NAME_RE.match(name):
        raise check.fail("name", f"{name!r} must be letters, digits, '.', '_' or '-' (max 64)")

    ollama = check.mapping(top["ollama"], "ollama", OLLAMA_KEYS, {"version"})
    version = check.string(ollama["version"], "ollama.version").removeprefix("v")
    try:
        parse_version(version)
    except ValueError as exc:
        raise check.fail("ollama.version", str(exc)) from None
    arches_raw = check.sequence(ollama.get("architectures", ["amd64"]), "ollama.architectures")
    if not arches_raw:
        raise check.fail("ollama.architectures", "must name at least one architecture")
    arches: list[str] = []
    for i, arch in enumerate(arches_raw):
        key = f"ollama.architectures[{i}]"
        if check.string(arch, key) not in ARCHITECTURES:
            raise check.fail(key, f"unknown architecture {arch!r} (allowed: {', '.join(ARCHITECTURES)})")
        if arch in arches:
            raise check.fail(key, f"architecture {arch!r} is listed twice")
        arches.append(arch)
    rocm = ollama.get("rocm", False)
    if not isinstance(rocm, bool):
        raise check.fail("ollama.rocm", f"must be true or false, got {rocm!r}")
    if rocm and "amd64" not in arches:
        raise check.fail("ollama.rocm", "ROCm builds exist for amd64 only; add amd64 to architectures")
    mlx, jetpack = _ollama_overlays(check, ollama, version, arches)

    seen: dict[ModelName, str] = {}

    def claim(model: ModelName, key: str) -> ModelName:
        if model in seen:
            raise check.fail(key, f"model {model.short} is already listed at {seen[model]}")
        seen[model] = key
        return model

    models = tuple(
        claim(check.model_name(item, f"models[{i}]"), f"models[{i}]")
        for i, item in enumerate(check.sequence(top.get("models", []), "models"))
    )
    local_models = tuple(
        _local_model(check, item, f"local_models[{i}]", claim)
        for i, item in enumerate(check.sequence(top.get("local_models", []), "local_models"))
    )
    store_models = tuple(
        _store_models(check, item, f"store_models[{i}]", claim)
        for i, item in enumerate(check.sequence(top.get("store_models", []), "store_models"))
    )
    images = _images(check, top.get("images", []))
    merged_mirrors = _mirrors(check, top.get("mirrors", {}), "mirrors")
    for host, url in (mirrors or {}).items():
        merged_mirrors[host] = _url(check, url, f"--mirror {host}")
    if not (models or local_models or store_models):
        raise check.fail("models", "the bundle names no model (models, local_models or store_models)")
    return Spec(
        path=spec_path,
        name=name,
        ollama=OllamaRelease(version=version, architectures=tuple(arches), rocm=rocm, mlx=mlx, jetpack=jetpack),
        models=models,
        local_models=local_models,
        store_models=store_models,
        images=images,
        mirrors=merged_mirrors,
        raw=top,
        deploy_kit=parse_kit_spec(top.get("deploy_kit"), check.fail),
        fleet=parse_fleet_spec(top.get("fleet"), check.fail),
    )


def _ollama_overlays(
    check: _Checker, ollama: dict[str, Any], version: str, arches: list[str]
) -> tuple[bool, tuple[int, ...]]:
    """ollama.mlx (bool) and ollama.jetpack (5, 6 or a list of them): the overlay archives to carry."""
    mlx = ollama.get("mlx", False)
    if not isinstance(mlx, bool):
        raise check.fail("ollama.mlx", f"must be true or false, got {mlx!r}")
    if mlx and "amd64" not in arches:
        raise check.fail("ollama.mlx", "MLX builds exist for amd64 only; add amd64 to architectures")
    if mlx and parse_version(version) < MLX_SINCE:
        since = ".".join(map(str, MLX_SINCE))
        raise check.fail("ollama.mlx", f"ollama {version} has no -mlx archive (it exists from {since} on)")
    raw = ollama.get("jetpack", [])
    items = raw if isinstance(raw, list) else [raw]
    jetpack: list[int] = []
    for i, item in enumerate(items):
        key = f"ollama.jetpack[{i}]" if isinstance(raw, list) else "ollama.jetpack"
        if isinstance(item, bool) or item not in JETPACKS:
            allowed = " or ".join(map(str, JETPACKS))
            raise check.fail(key, f"must be JetPack {allowed} (or a list of them), got {item!r}")
        if item in jetpack:
            raise check.fail(key, f"JetPack {item} is listed twice")
        jetpack.append(item)
    if jetpack and "arm64" not in arches:
        raise check.fail("ollama.jetpack", "JetPack builds exist for arm64 only; add arm64 to architectures")
    return mlx, tuple(jetpack)


def _local_model(check: _Checker, item: Any, key: str, claim: Any) -> LocalModel:
    entry = check.mapping(item, key, LOCAL_MODEL_KEYS, {"name", "gguf"})
    name = claim(check.model_name(entry["name"], f"{key}.name"), f"{key}.name")
    if ("modelfile" in entry) == ("template" in entry):
        raise check.fail(key, "give exactly one of 'modelfile' or 'template' (a GGUF without a template rambles)")
    modelfile = check.file(entry["modelfile"], f"{key}.modelfile") if "modelfile" in entry else None
    template = check.string(entry["template"], f"{key}.template") if "template" in entry else None
    system = check.string(entry["system"], f"{key}.system") if "system" in entry else None
    license_text = check.string(entry["license"], f"{key}.license") if "license" in entry else None
    parameters = check.mapping(entry.get("parameters", {}), f"{key}.parameters", set(entry.get("parameters") or {}))
    for pname, pvalue in parameters.items():
        pkey = f"{key}.parameters.{pname}"
        if not PARAMETER_RE.match(pname):
            raise check.fail(pkey, "parameter names are lower-case words like num_ctx")
        values = pvalue if isinstance(pvalue, list) else [pvalue]
        for value in values:
            if not isinstance(value, str | int | float | bool):
                raise check.fail(pkey, f"must be a scalar or a list of scalars, got {value!r}")
    return LocalModel(
        name=name,
        gguf=check.file(entry["gguf"], f"{key}.gguf"),
        modelfile=modelfile,
        template=template,
        system=system,
        parameters=dict(parameters),
        license=license_text,
    )


def _store_models(check: _Checker, item: Any, key: str, claim: Any) -> StoreModels:
    entry = check.mapping(item, key, STORE_KEYS, {"path", "models"})
    store = Path(check.string(entry["path"], f"{key}.path")).expanduser()
    if not store.is_absolute():
        store = check.path.parent / store
    if not (store / "manifests").is_dir():
        raise check.fail(f"{key}.path", f"{store} is not an ollama models directory (no manifests/)")
    names = check.sequence(entry["models"], f"{key}.models")
    if not names:
        raise check.fail(f"{key}.models", "must name at least one model")
    models = tuple(claim(check.model_name(n, f"{key}.models[{i}]"), f"{key}.models[{i}]") for i, n in enumerate(names))
    return StoreModels(path=store, models=models)


def _url(check: _Checker, value: Any, key: str) -> str:
    url = check.string(value, key)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise check.fail(key, f"{url!r} is not an http(s) URL")
    return url.rstrip("/")


def _mirrors(check: _Checker, value: Any, key: str) -> dict[str, str]:
    entries = check.mapping(value, key, set(value) if isinstance(value, dict) else set())
    return {host: _url(check, url, f"{key}.{host}") for host, url in entries.items()}


def _images(check: _Checker, value: Any) -> tuple[ImageSpec, ...]:
    images: list[ImageSpec] = []
    paths: dict[str, str] = {}
    for i, item in enumerate(check.sequence(value, "images")):
        key = f"images[{i}]"
        platform = DEFAULT_PLATFORM
        if isinstance(item, dict):
            entry = check.mapping(item, key, IMAGE_KEYS, {"reference"})
            text = check.string(entry["reference"], f"{key}.reference")
            if "platform" in entry:
                platform = check.string(entry["platform"], f"{key}.platform")
                try:
                    parse_platform(platform)
                except ValueError as exc:
                    raise check.fail(f"{key}.platform", str(exc)) from None
        else:
            text = check.string(item, key)
        try:
            ref = parse_image_reference(text)
        except ValueError as exc:
            raise check.fail(key, str(exc)) from None
        if ref.bundle_path in paths:
            raise check.fail(key, f"{ref} would be stored as {ref.bundle_path}, like {paths[ref.bundle_path]}")
        paths[ref.bundle_path] = key
        images.append(ImageSpec(ref, platform))
    return tuple(images)
