"""Static checks of the deployment files: Docker cannot run here, so parse what it would read.

Dockerfile, .dockerignore, docker-compose.yml (+ the CPU override) and the README's settings table are
checked against the repository and against `app.settings.Settings`; the health-check commands are run for
real against a local HTTP server. `python -m tests.test_deploy` prints the README's settings table.
"""

from __future__ import annotations

import http.server
import importlib.metadata
import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_CPU = ROOT / "docker-compose.cpu.yml"
ENV_PREFIX = Settings.model_config["env_prefix"]
SETTINGS_ENV = {f"{ENV_PREFIX}{name.upper()}": name for name in Settings.model_fields}
# onnxruntime-gpu's PyPI wheels: CUDA 12 + cuDNN 9 up to 1.26, CUDA 13 from this release on.
ORT_GPU_FIRST_CUDA13 = Version("1.27.0")
TABLE_START, TABLE_END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"


# --- Dockerfile -------------------------------------------------------------------------------------


@dataclass
class Stage:
    """One `FROM ... AS name` block: its base (unresolved) and its instructions in order."""

    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def resolve_base(self, stage: Stage, build_args: dict[str, str]) -> str:
        """The image a stage starts from, following stage names down to an external image."""
        base = _substitute(stage.base, {**self.global_args, **build_args})
        names = {s.name for s in self.stages}
        return self.resolve_base(self.stage(base), build_args) if base in names else base


def _substitute(text: str, values: dict[str, str]) -> str:
    """Docker's `${NAME}` substitution (the only form these files use)."""
    return re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], text)


def _instructions(text: str) -> Iterator[tuple[str, str]]:
    """(KEYWORD, rest) per instruction, with line continuations joined and comments dropped."""
    logical = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        keyword, _, rest = logical.partition(" ")
        yield keyword.upper(), rest.strip()
        logical = ""


def _arg_default(rest: str) -> tuple[str, str]:
    name, _, default = rest.partition("=")
    return name, default.strip('"')


def parse_dockerfile(path: Path = ROOT / "Dockerfile") -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, rest in _instructions(path.read_text()):
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(base=words[0], name=name))
        elif stages:
            stages[-1].instructions.append((keyword, rest))
        elif keyword == "ARG":
            global_args.update([_arg_default(rest)])
    return Dockerfile(global_args, stages)


def _copy_sources(rest: str) -> tuple[str | None, list[str]]:
    """(--from stage or None, source paths) of a COPY instruction in shell form."""
    words = shlex.split(rest)
    flags = [w for w in words if w.startswith("--")]
    paths = [w for w in words if not w.startswith("--")]
    from_ = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
    return from_, paths[:-1]


def _env_pairs(rest: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in shlex.split(rest))


def _dockerignore_included() -> set[str]:
    """The paths the allow-list .dockerignore lets into the build context."""
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [ln for ln in lines if ln and not ln.startswith("#")]
    assert patterns[0] == "*", ".dockerignore must start from `*` (an allow-list)"
    return {p[1:].rstrip("/") for p in patterns if p.startswith("!")}


def test_dockerfile_variants_name_both_base_images() -> None:
    df = parse_dockerfile()
    assert df.global_args["VARIANT"] == "gpu", "the GPU image is the default build"
    runtime = df.stages[-1]
    assert runtime.name == "runtime"
    gpu_base = df.resolve_base(runtime, {})
    cpu_base = df.resolve_base(runtime, {"VARIANT": "cpu"})
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-cudnn-runtime-ubuntu\d\d\.04", gpu_base), gpu_base
    assert re.fullmatch(r"python:3\.1[1-3]-slim(-\w+)?", cpu_base), cpu_base
    # The build stage installs into the same base as the runtime, so the copied venv's interpreter exists.
    assert df.resolve_base(df.stage("build"), {"VARIANT": "cpu"}) == cpu_base
    assert df.resolve_base(df.stage("build"), {}) == gpu_base


def test_dockerfile_onnxruntime_gpu_matches_cuda_major() -> None:
    df = parse_dockerfile()
    cuda_major = int(re.search(r"nvidia/cuda:(\d+)\.", df.global_args["CUDA_IMAGE"]).group(1))
    ort_arg = dict(_arg_default(a) for a in df.stage("base-gpu").args("ARG"))["ORT_GPU"]
    requirement = Requirement(ort_arg)
    assert requirement.name == "onnxruntime-gpu"
    wanted = {12: SpecifierSet(f"<{ORT_GPU_FIRST_CUDA13}"), 13: SpecifierSet(f">={ORT_GPU_FIRST_CUDA13}")}[cuda_major]
    probes = [Version(f"1.{minor}.0") for minor in range(17, 40)]
    allowed = [v for v in probes if v in requirement.specifier]
    assert allowed, f"{ort_arg} admits no release"
    assert all(v in wanted for v in allowed), f"{ort_arg} admits builds for another CUDA than {cuda_major}"


def test_dockerfile_extras_exist_and_pick_one_onnxruntime() -> None:
    df = parse_dockerfile()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for stage_name, runtime_package in (("base-gpu", "onnxruntime-gpu"), ("base-cpu", "onnxruntime")):
        env: dict[str, str] = {}
        for rest in df.stage(stage_name).args("ENV"):
            env.update(_env_pairs(rest))
        extra = env["SERVE_EXTRA"]
        assert extra in extras, f"{stage_name} installs the missing extra [{extra}]"
        names = {canonicalize_name(Requirement(r).name) for r in extras[extra]}
        ort_names = {n for n in names if n.startswith("onnxruntime")}
        assert ort_names == {runtime_package}, f"[{extra}] must bring exactly {runtime_package}, has {ort_names}"
        pin = _substitute(env["ORT_REQUIREMENT"], dict(_arg_default(a) for a in df.stage(stage_name).args("ARG")))
        assert canonicalize_name(Requirement(pin).name) == runtime_package, f"{stage_name} pins {pin}"


def test_dockerfile_copies_existing_allowed_paths_and_never_training() -> None:
    df = parse_dockerfile()
    included = _dockerignore_included()
    assert not any(p.split("/")[0] == "training" for p in included)
    for stage in df.stages:
        for keyword in ("COPY", "ADD"):
            for rest in stage.args(keyword):
                from_, sources = _copy_sources(rest)
                assert "training" not in rest, f"stage {stage.name} copies training code: {keyword} {rest}"
                if from_ is not None:
                    continue
                for source in sources:
                    top = PurePosixPath(source).parts[0]
                    assert (ROOT / source).exists(), f"{keyword} {source}: not in the repository"
                    assert top in included, f"{keyword} {source}: excluded by .dockerignore"


def test_dockerfile_runtime_stage_is_lean_and_unprivileged() -> None:
    df = parse_dockerfile()
    runtime = df.stages[-1]
    copies = [_copy_sources(rest) for rest in runtime.args("COPY")]
    assert ("build", ["/opt/venv"]) in copies
    assert {tuple(src) for frm, src in copies if frm is None} == {("models/",)}, "runtime gets models/ only"
    users = runtime.args("USER")
    assert users and users[-1].split(":")[0] not in {"root", "0"}, f"runtime runs as {users}"
    assert len(runtime.args("HEALTHCHECK")) == 1 and "/healthz" in runtime.args("HEALTHCHECK")[0]
    assert runtime.args("CMD") and "serve" in runtime.args("CMD")[-1]
    assert "8000" in runtime.args("EXPOSE")


def test_dockerfile_personid_env_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env: dict[str, str] = {}
    for rest in parse_dockerfile().stages[-1].args("ENV"):
        env.update({k: v for k, v in _env_pairs(rest).items() if k.startswith(ENV_PREFIX)})
    assert env, "the runtime image sets the service's settings"
    assert set(env) <= set(SETTINGS_ENV), f"unknown settings: {set(env) - set(SETTINGS_ENV)}"
    _check_settings_accept(env, monkeypatch)
    assert env["PERSONID_HOST"] == "0.0.0.0", "inside a container the service must listen on all interfaces"


# --- docker-compose ----------------------------------------------------------------------------------


class _Reset:
    """Compose's `!reset` tag: drop the key from the merged model."""


class ComposeLoader(yaml.SafeLoader):
    """YAML loader that knows Compose's merge tags `!reset` and `!override`."""


ComposeLoader.add_constructor("!reset", lambda loader, node: _Reset())
ComposeLoader.add_constructor(
    "!override",
    lambda loader, node: (
        loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.MappingNode)
        else loader.construct_sequence(node, deep=True)
        if isinstance(node, yaml.SequenceNode)
        else loader.construct_scalar(node)
    ),
)


def load_compose(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=ComposeLoader)


def merge_compose(base: Any, override: Any) -> Any:
    """Compose's merge rules for the parts used here: mappings merge, `!reset` removes, scalars replace."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            if isinstance(value, _Reset):
                merged.pop(key, None)
            else:
                merged[key] = merge_compose(base[key], value) if key in base else value
        return merged
    return override


COMPOSE_VARIABLE = re.compile(r"\$\{(\w+)(:?[-?])?([^}]*)\}")


def _interpolate(value: str, shell: dict[str, str] | None = None) -> str:
    """Compose interpolation from `shell` (default: every variable unset): `${X:-d}` -> d when X is unset or
    empty, `${X:?msg}` -> a placeholder standing for the value compose insists on."""
    shell = shell or {}

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match.groups()
        if shell.get(name):
            return shell[name]
        if op in {":-", "-"}:
            return arg
        assert op in {":?", "?"}, f"{match.group(0)}: an unset variable must have a default or an error"
        return f"required-{name.lower()}"

    return COMPOSE_VARIABLE.sub(replace, str(value)).replace("$$", "$")


def _required_variables(*paths: Path) -> set[str]:
    """Variables written `${X:?msg}`: compose refuses to start while one is unset or empty."""
    return {m[0] for path in paths for m in COMPOSE_VARIABLE.findall(path.read_text()) if m[1] == ":?"}


def _check_settings_accept(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in SETTINGS_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose(COMPOSE)


@pytest.fixture(scope="module")
def compose_cpu(compose: dict[str, Any]) -> dict[str, Any]:
    return merge_compose(compose, load_compose(COMPOSE_CPU))


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_compose_services_and_qdrant(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"qdrant", "api"}
    qdrant = services["qdrant"]
    image, _, tag = qdrant["image"].partition(":")
    assert image == "qdrant/qdrant" and re.fullmatch(r"v\d+\.\d+\.\d+", tag), f"pin a release: {qdrant['image']}"
    server_minor = int(tag.split(".")[1])
    client = Version(importlib.metadata.version("qdrant-client"))
    assert abs(server_minor - client.minor) <= 1, f"qdrant-client {client} does not support server {tag}"
    storage = [v for v in qdrant["volumes"] if v.split(":")[1] == "/qdrant/storage"]
    assert storage and storage[0].split(":")[0] in compose["volumes"], "Qdrant storage must be a named volume"
    assert qdrant["restart"] in {"always", "unless-stopped"}
    assert "/readyz" in " ".join(qdrant["healthcheck"]["test"])
    assert "ports" not in qdrant, "Qdrant stays on the compose network"


def test_compose_api_service(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    api, qdrant = compose["services"]["api"], compose["services"]["qdrant"]
    assert api["build"]["context"] == "." and api["build"]["args"]["VARIANT"] == "gpu"
    assert api["depends_on"] == {"qdrant": {"condition": "service_healthy"}}
    assert api["restart"] in {"always", "unless-stopped"}
    assert any(_interpolate(p).endswith(":8000") for p in api["ports"])
    assert "/healthz" in " ".join(api["healthcheck"]["test"])
    devices = api["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)

    env = _environment(api)
    assert set(env) <= set(SETTINGS_ENV), f"unknown settings: {set(env) - set(SETTINGS_ENV)}"
    assert env["PERSONID_QDRANT_URL"] == "http://qdrant:6333"
    qdrant_key = _environment(qdrant)["QDRANT__SERVICE__API_KEY"]
    variable = re.compile(r"\$\{(\w+)")
    assert variable.match(env["PERSONID_QDRANT_API_KEY"])[1] == variable.match(qdrant_key)[1], "one shared key"
    settings = _check_settings_accept({k: _interpolate(v) for k, v in env.items()}, monkeypatch)

    mounts = {PurePosixPath(v.split(":")[1]): v.split(":")[0] for v in api["volumes"]}
    model_dir = PurePosixPath(settings.model_path.as_posix()).parent
    assert model_dir in mounts, f"no volume at the model's folder {model_dir}"
    assert (ROOT / mounts[model_dir]).resolve() == ROOT / "models"


def test_compose_cpu_variant(compose_cpu: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    api = compose_cpu["services"]["api"]
    assert api["build"] == {"context": ".", "args": {"VARIANT": "cpu"}}
    assert "deploy" not in api, "the CPU variant must not reserve a GPU"
    assert api["image"] != "personid:gpu"
    assert api["depends_on"] == {"qdrant": {"condition": "service_healthy"}}
    env = _environment(api)
    assert set(env) <= set(SETTINGS_ENV)
    settings = _check_settings_accept({k: _interpolate(v) for k, v in env.items()}, monkeypatch)
    assert settings.providers == ["CPUExecutionProvider"]


def _published(port: str | dict[str, Any], shell: dict[str, str] | None = None) -> tuple[str, str, str]:
    """(host address, host port, container port) of one `ports:` entry; an empty address is every interface."""
    if isinstance(port, dict):
        return (
            _interpolate(port.get("host_ip", ""), shell),
            _interpolate(port["published"], shell),
            _interpolate(port["target"], shell),
        )
    parts = _interpolate(port, shell).split("/")[0].rsplit(":", 2)
    if len(parts) == 2:
        return "", parts[0], parts[1]
    host, published, target = parts
    return host, published, target


@pytest.mark.parametrize("variant", ["gpu", "cpu"])
def test_compose_publishes_the_api_on_loopback_by_default(
    variant: str, compose: dict[str, Any], compose_cpu: dict[str, Any]
) -> None:
    """Finding 7: a bare `docker compose up` must not expose the API to the network."""
    services = (compose if variant == "gpu" else compose_cpu)["services"]
    published = {name: [_published(p) for p in s.get("ports", [])] for name, s in services.items()}
    assert published["api"] == [("127.0.0.1", "8000", "8000")], published
    assert all(host == "127.0.0.1" for ports in published.values() for host, _, _ in ports), published
    exposed = [_published(p, {"API_BIND": "0.0.0.0", "API_PORT": "9000"}) for p in services["api"]["ports"]]
    assert exposed == [("0.0.0.0", "9000", "8000")], "API_BIND / API_PORT must choose the published address"


@pytest.mark.parametrize("variant", ["gpu", "cpu"])
def test_compose_requires_api_keys(
    variant: str, compose: dict[str, Any], compose_cpu: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 7: compose refuses to start without API keys, the way it refuses without QDRANT_API_KEY."""
    env = _environment((compose if variant == "gpu" else compose_cpu)["services"]["api"])
    assert re.fullmatch(r"\$\{PERSONID_API_KEYS:\?[^}]+\}", env["PERSONID_API_KEYS"]), env["PERSONID_API_KEYS"]
    assert re.fullmatch(r"\$\{QDRANT_API_KEY:\?[^}]+\}", env["PERSONID_QDRANT_API_KEY"])
    files = [COMPOSE] if variant == "gpu" else [COMPOSE, COMPOSE_CPU]
    assert {"PERSONID_API_KEYS", "QDRANT_API_KEY"} <= _required_variables(*files)
    shell = {"QDRANT_API_KEY": "q", "PERSONID_API_KEYS": "k1, k2"}
    settings = _check_settings_accept({k: _interpolate(v, shell) for k, v in env.items()}, monkeypatch)
    assert [key.get_secret_value() for key in settings.api_keys] == ["k1", "k2"], "the keys reach the service"


def _deployment_section(readme: str) -> str:
    section = readme.split("## Deployment with docker-compose", 1)[1]
    return section.split("\n## ", 1)[0]


def test_readme_documents_the_compose_security_defaults() -> None:
    """Every compose command in the README sets the required keys, and the README says how to expose the API."""
    section = _deployment_section((ROOT / "README.md").read_text())
    required = _required_variables(COMPOSE, COMPOSE_CPU)
    ups = [b for b in re.findall(r"```bash\n(.*?)```", section, re.DOTALL) if re.search(r"docker compose .*\bup\b", b)]
    assert ups, "the deployment section shows no `docker compose up`"
    for block in ups:
        exported = set(re.findall(r"(\w+)=", "\n".join(re.findall(r"^export (.*)$", block, re.MULTILINE))))
        assert required <= exported, f"this block would stop on a missing variable: {required - exported}\n{block}"
    assert "**Security defaults**" in section
    assert "127.0.0.1" in section and "API_BIND=0.0.0.0" in section, "say how to expose the API deliberately"
    assert "PERSONID_PROTECT_READS" in section, "say that reads stay open unless protected"
    used = {m[0] for path in (COMPOSE, COMPOSE_CPU) for m in COMPOSE_VARIABLE.findall(path.read_text())}
    undocumented = {name for name in used if f"`{name}" not in section and f"{name}=" not in section}
    assert not undocumented, f"compose reads variables the README's deployment section never names: {undocumented}"


def _docker_compose() -> list[str] | None:
    if shutil.which("docker") is None:
        return None
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    return ["docker", "compose"] if probe.returncode == 0 else None


@pytest.mark.parametrize("files", [[COMPOSE], [COMPOSE, COMPOSE_CPU]], ids=["gpu", "cpu"])
def test_docker_compose_config_accepts_files(files: list[Path], tmp_path: Path) -> None:
    command = _docker_compose()
    if command is None:
        pytest.skip("the docker compose plugin is not installed")
    args = [*command, "--project-directory", str(ROOT), *[a for f in files for a in ("-f", str(f))]]
    base = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(tmp_path)}
    required = {"QDRANT_API_KEY": "k", "PERSONID_API_KEYS": "k1,k2"}
    ok = subprocess.run([*args, "config", "--format", "json"], capture_output=True, text=True, env=base | required)
    assert ok.returncode == 0, ok.stderr
    published = json.loads(ok.stdout)["services"]["api"]["ports"]
    assert [p["host_ip"] for p in published] == ["127.0.0.1"], published
    for name in required:
        env = base | {k: v for k, v in required.items() if k != name}
        missing = subprocess.run([*args, "config", "--quiet"], capture_output=True, text=True, env=env)
        assert missing.returncode != 0 and name in missing.stderr


# --- health checks, run for real ----------------------------------------------------------------------


class _StatusHandler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path in {"/healthz", "/readyz"} else 404)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def probe_server() -> Iterator[type[_StatusHandler]]:
    """A local server answering /healthz and /readyz with `handler.status`; its port is `handler.port`."""
    handler = type("Handler", (_StatusHandler,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler
    server.shutdown()
    server.server_close()


def _exec_form(test: list[str]) -> list[str]:
    assert test[0] == "CMD", "exec form: no shell needed in the image"
    return test[1:]


def _python_healthchecks() -> dict[str, list[str]]:
    from_dockerfile = parse_dockerfile().stages[-1].args("HEALTHCHECK")[0]
    exec_json = from_dockerfile[from_dockerfile.index("CMD") + len("CMD") :].strip()
    api_test = load_compose(COMPOSE)["services"]["api"]["healthcheck"]["test"]
    return {"Dockerfile": json.loads(exec_json), "compose": _exec_form(api_test)}


@pytest.mark.parametrize("source", ["Dockerfile", "compose"])
def test_api_healthcheck_command_follows_healthz(source: str, probe_server: type[_StatusHandler]) -> None:
    argv = _python_healthchecks()[source]
    assert argv[0] == "python3"
    env = {"PERSONID_PORT": str(probe_server.port)}
    run = [sys.executable, *argv[1:]]
    assert subprocess.run(run, env=env, capture_output=True, timeout=20).returncode == 0
    probe_server.status = 503
    assert subprocess.run(run, env=env, capture_output=True, timeout=20).returncode != 0


def test_qdrant_healthcheck_command_follows_readyz(probe_server: type[_StatusHandler]) -> None:
    argv = _exec_form(load_compose(COMPOSE)["services"]["qdrant"]["healthcheck"]["test"])
    assert argv[:2] == ["bash", "-c"] and "6333" in argv[2]
    script = argv[2].replace("6333", str(probe_server.port))
    assert subprocess.run(["bash", "-c", script], capture_output=True, timeout=20).returncode == 0
    probe_server.status = 503
    assert subprocess.run(["bash", "-c", script], capture_output=True, timeout=20).returncode != 0


# --- packaging -----------------------------------------------------------------------------------------


def _extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _dependency_closure(requirements: list[str]) -> tuple[set[str], set[str]]:
    """(installed distributions reached, names not installed here) from requirements, following extras."""
    reached: set[str] = set()
    missing: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    stack = [Requirement(r) for r in requirements]
    while stack:
        req = stack.pop()
        name = canonicalize_name(req.name)
        if (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.add(name)
            continue
        reached.add(name)
        for line in dist.requires or []:
            sub = Requirement(line)
            extras = ["", *sorted(req.extras)]
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras):
                stack.append(sub)
    return reached, missing


def test_serving_extras_have_no_torch() -> None:
    extras = _extras()
    for extra in ("serve", "gpu"):
        direct = {canonicalize_name(Requirement(r).name) for r in extras[extra]}
        assert not direct & {"torch", "torchvision"}, f"[{extra}] lists torch"
    reached, _ = _dependency_closure(extras["serve"])
    assert {"fastapi", "onnxruntime", "qdrant-client"} <= reached, "the closure walk found the serve extra"
    assert not reached & {"torch", "torchvision"}, "a dependency of [serve] pulls torch"


def test_gpu_extra_is_serve_with_onnxruntime_gpu() -> None:
    extras = _extras()

    def without_ort(extra: str) -> set[str]:
        return {r for r in extras[extra] if not Requirement(r).name.startswith("onnxruntime")}

    assert without_ort("gpu") == without_ort("serve"), "the two serving extras drifted apart"


# --- README ----------------------------------------------------------------------------------------------


def _show_default(value: object) -> str:
    if value is None:
        return "*(unset)*"
    if value == []:
        return "*(empty)*"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Path):
        return f"`{value.as_posix()}`"
    return f"`{value}`"


def settings_table() -> str:
    """The README's configuration table, generated from `Settings` so that it cannot drift."""
    rows = ["| setting | environment variable | default | meaning |", "|---|---|---|---|"]
    for name, info in Settings.model_fields.items():
        default = info.get_default(call_default_factory=True)
        meaning = (info.description or "").replace("|", "\\|")
        rows.append(f"| `{name}` | `{ENV_PREFIX}{name.upper()}` | {_show_default(default)} | {meaning} |")
    return "\n".join(rows)


def test_readme_settings_table_matches_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    assert TABLE_START in readme and TABLE_END in readme
    table = readme.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0].strip()
    for env_name in SETTINGS_ENV:
        assert f"`{env_name}`" in table, f"{env_name} missing from the README table"
    assert table == settings_table(), "README table out of date; regenerate: python -m tests.test_deploy"


def test_readme_quick_start_commands_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    for target in ("run", "test"):
        assert f"make {target}" in readme
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), f"Makefile has no `{target}` target"
    for path in re.findall(r"-f (\S+\.ya?ml)", readme):
        assert (ROOT / path).is_file(), f"README names a missing compose file {path}"


if __name__ == "__main__":
    print(settings_table())
