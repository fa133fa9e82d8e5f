"""docker/: the compose file validates and keeps the deployment's rules (pinned images, no
literal password, healthchecks, shared volumes, exactly-once); the Dockerfile and the
Kubernetes manifest agree with it and with the code.

The compose checks run ``docker-compose -f docker/compose.yaml config`` (no Docker engine
needed) with an env file and secret files of dummy values; they are skipped when
``docker-compose`` is not on PATH (``.ci/run`` installs Debian's when it can).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from fishweight.runtime import jars

yaml = pytest.importorskip("yaml", reason="PyYAML (installed with apache-flink) is needed")

CHECKOUT = Path(__file__).resolve().parents[1]
DOCKER = CHECKOUT / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
ENV_EXAMPLE = DOCKER / ".env.example"
K8S = DOCKER / "k8s" / "flinkdeployment.yaml"

SECRET_FILES = ("mongo_root_password", "mongo_trainer_password", "grafana_admin_password")
SECRETISH_KEY = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|API_?KEY", re.IGNORECASE)
URI_WITH_PASSWORD = re.compile(r"://[^/@\s:]+:[^/@\s]+@")
LONG_RUNNING = ("kafka", "mongo", "jobmanager", "taskmanager", "trainer", "prometheus", "grafana")


def compose_code() -> str:
    """The compose file without its comment lines."""
    return "\n".join(line for line in COMPOSE.read_text().splitlines()
                     if not line.lstrip().startswith("#"))


def required_variables() -> set[str]:
    """Every ``${VAR:?message}`` in the compose file: what the env file must define."""
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?\?", compose_code()))


def interpolated_variables() -> set[str]:
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", compose_code()))


def run_compose_config(env_file: Path) -> subprocess.CompletedProcess:
    # Hermetic: none of the variables the file interpolates comes from the caller's shell.
    env = {k: v for k, v in os.environ.items()
           if k not in interpolated_variables() and not k.startswith("COMPOSE_")}
    return subprocess.run(
        ["docker-compose", "--profile", "simulator", "--env-file", str(env_file), "-f",
         str(COMPOSE), "config"],
        cwd=CHECKOUT, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def compose(tmp_path_factory):
    """The validated configuration, with the dummy secret values it must not contain."""
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not on PATH (.ci/run installs Debian's docker-compose "
                    "when apt-get is available); the compose file was not validated")
    tmp = tmp_path_factory.mktemp("compose")
    secrets = tmp / "secrets"
    secrets.mkdir()
    dummy_passwords = []
    for name in SECRET_FILES:
        dummy = f"dummy-password-{uuid.uuid4().hex}"
        (secrets / name).write_text(dummy + "\n")
        dummy_passwords.append(dummy)
    values = {name: f"dummy-{name.lower().replace('_', '-')}" for name in required_variables()}
    values["SECRETS_DIR"] = str(secrets)
    env_file = tmp / "env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in sorted(values.items())))
    result = run_compose_config(env_file)
    assert result.returncode == 0, (
        f"docker-compose config failed ({result.returncode}):\n{result.stderr}")
    return {"config": yaml.safe_load(result.stdout), "text": result.stdout,
            "passwords": dummy_passwords, "values": values}


def services(compose) -> dict:
    return compose["config"]["services"]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # KEY=value entries
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def mounts(service: dict) -> dict[str, tuple[str, bool]]:
    """Mount target -> (source, read-only), from the short (v1) or long (v2) syntax."""
    out = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            out[target] = (source, "ro" in (mode[0].split(",") if mode else []))
        else:
            out[volume["target"]] = (volume.get("source"), bool(volume.get("read_only")))
    return out


def image_is_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.strip().partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        current = ""
    return instructions


def dockerfile_env() -> dict[str, str]:
    env = {}
    for keyword, rest in dockerfile_instructions():
        if keyword in ("ENV", "ARG"):
            for item in shlex.split(rest):
                if "=" in item:
                    key, value = item.split("=", 1)
                    env[key] = value
    return env


def compose_fishweight_image() -> str:
    raw = yaml.safe_load(COMPOSE.read_text())
    return raw["x-fishweight-image"]["image"]


# The compose file, through docker-compose ----------------------------------------------

def test_compose_config_validates(compose):
    names = set(services(compose))
    assert {"kafka", "mongo", "jobmanager", "taskmanager", "topics", "bootstrap-model",
            "submit", "trainer", "simulator"} <= names


def test_missing_env_file_stops_compose(compose, tmp_path):
    empty = tmp_path / "env"
    empty.write_text("")
    result = run_compose_config(empty)
    assert result.returncode != 0
    assert "docker/.env" in result.stderr


def test_every_image_is_pinned_by_a_tag(compose):
    for name, service in services(compose).items():
        image = service.get("image")
        assert image, f"service {name} has no image"
        assert image_is_pinned(image), f"service {name}: image {image!r} is not pinned"
    built = {name for name, s in services(compose).items() if "build" in s}
    assert {s["image"] for n, s in services(compose).items() if n in built} == {
        compose_fishweight_image()}


def test_no_service_has_a_literal_password(compose):
    for password in compose["passwords"]:
        assert password not in compose["text"]
    for name, service in services(compose).items():
        for key, value in environment(service).items():
            if SECRETISH_KEY.search(key):
                assert key.endswith("_FILE") and value.startswith("/run/secrets/"), (
                    f"service {name}: {key} must name a secret file, not hold a value")
            assert not URI_WITH_PASSWORD.search(value), f"service {name}: {key} has a password"
        command = service.get("command") or []
        command = command if isinstance(command, list) else shlex.split(command)
        assert not any("password" in part.lower() for part in command), name
    mongo = environment(services(compose)["mongo"])
    assert mongo["MONGO_INITDB_ROOT_PASSWORD_FILE"] == "/run/secrets/mongo_root_password"
    trainer = environment(services(compose)["trainer"])
    assert trainer["FISHWEIGHT_STORE_PASSWORD_FILE"] == "/run/secrets/mongo_trainer_password"
    assert trainer["FISHWEIGHT_STORE_URI"].startswith("mongodb://dummy-")
    secrets = compose["config"]["secrets"]
    assert set(secrets) == set(SECRET_FILES)
    assert all(Path(s["file"]).parent == Path(compose["values"]["SECRETS_DIR"])
               for s in secrets.values())


def test_kafka_mongo_and_jobmanager_have_healthchecks(compose):
    for name in ("kafka", "mongo", "jobmanager"):
        check = services(compose)[name].get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
    assert any("/overview" in part for part in services(compose)["jobmanager"]["healthcheck"]
               ["test"])
    submit = services(compose)["submit"]["depends_on"]
    assert submit["jobmanager"]["condition"] == "service_healthy"
    assert submit["bootstrap-model"]["condition"] == "service_completed_successfully"


def test_services_have_restart_policies(compose):
    for name, service in services(compose).items():
        assert service.get("restart"), f"service {name} has no restart policy"
    for name in LONG_RUNNING:
        assert services(compose)[name]["restart"] in ("always", "unless-stopped"), name


def test_models_key_and_checkpoints_are_shared(compose):
    env = dockerfile_env()
    model_dir = env["FISHWEIGHT_MODEL_DIR"]
    key_dir = str(Path(env["FISHWEIGHT_MODEL_KEY_FILE"]).parent)
    checkpoints = env["FISHWEIGHT_CHECKPOINT_DIR"]
    assert not Path(env["FISHWEIGHT_MODEL_KEY_FILE"]).is_relative_to(model_dir)
    svc = services(compose)
    # The trainer writes the models, the TaskManagers and the submitting client read them
    # and verify them with the same key; bootstrap-model creates both.
    for name, models_ro, key_ro in (("bootstrap-model", False, False), ("trainer", False, True),
                                    ("taskmanager", True, True), ("submit", True, True)):
        m = mounts(svc[name])
        assert m[model_dir] == ("models", models_ro), name
        assert m[key_dir] == ("model-key", key_ro), name
    for name in ("jobmanager", "taskmanager"):
        assert mounts(svc[name])[checkpoints] == ("checkpoints", False), name
    # The trainer's decision log outlives a recreated container.
    trainer_state = environment(svc["trainer"])["FISHWEIGHT_STATE_DIR"]
    assert mounts(svc["trainer"])[trainer_state] == ("trainer-state", False)
    assert mounts(svc["submit"])[checkpoints][0] == "checkpoints"
    properties = environment(svc["jobmanager"])["FLINK_PROPERTIES"]
    assert f"execution.checkpointing.dir: file://{checkpoints}" in properties
    assert environment(svc["taskmanager"])["FLINK_PROPERTIES"] == properties
    # The entrypoint reads every line as a key and a value: no comment lines.
    assert not [line for line in properties.splitlines() if line.lstrip().startswith("#")]


def test_job_sinks_are_exactly_once(compose):
    svc = services(compose)
    assert environment(svc["submit"])["FISHWEIGHT_DELIVERY_GUARANTEE"] == "exactly-once"
    # Flink's KafkaSink defaults to a 1 h transaction timeout; the broker must allow it.
    assert int(environment(svc["kafka"])["KAFKA_TRANSACTION_MAX_TIMEOUT_MS"]) >= 3_600_000
    assert environment(svc["kafka"])["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    venv_python = "/opt/fishweight/venv/bin/python"
    for line in ("python.executable", "python.client.executable"):
        assert f"{line}: {venv_python}" in environment(svc["submit"])["FLINK_PROPERTIES"]


# The Dockerfile, the env example, the Kubernetes manifest: no docker-compose needed -----

def test_dockerfile_pins_its_base_image():
    env = dockerfile_env()
    froms = [rest.split()[0] for keyword, rest in dockerfile_instructions() if keyword == "FROM"]
    assert froms
    for image in froms:
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], image)
        assert image_is_pinned(resolved), resolved
        assert resolved.startswith("flink:2.0.1-"), resolved


def test_dockerfile_verifies_the_connector_jars_the_code_expects():
    text = DOCKERFILE.read_text()
    pinned = {name: digest for digest, name in re.findall(r"\b([0-9a-f]{64})\s+(\S+\.jar)\b",
                                                          text)}
    assert pinned == jars.JARS
    assert "sha256sum -c" in text
    assert "flink-connector-kafka/4.0.1-2.0/flink-connector-kafka-4.0.1-2.0.jar" in text
    assert "kafka-clients/3.9.1/kafka-clients-3.9.1.jar" in text
    assert dockerfile_env()["FISHWEIGHT_JAR_DIR"] == "/opt/fishweight/jars"


def test_env_example_defines_every_required_variable_and_no_password():
    defined = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            defined[key.strip()] = value.strip()
    assert required_variables() <= set(defined)
    assert all(defined[name] for name in required_variables())
    assert not [key for key in defined if SECRETISH_KEY.search(key)]
    ignored = (DOCKER / ".gitignore").read_text().split()
    assert ".env" in ignored and "secrets/" in ignored


def test_k8s_manifest_runs_the_same_image_and_job_file():
    manifest = yaml.safe_load(K8S.read_text())
    assert manifest["apiVersion"] == "flink.apache.org/v1beta1"
    assert manifest["kind"] == "FlinkDeployment"
    spec = manifest["spec"]
    assert spec["image"] == compose_fishweight_image()
    assert image_is_pinned(spec["image"])
    assert spec["flinkVersion"] == "v2_0"
    job = spec["job"]
    assert job["entryClass"] == "org.apache.flink.client.python.PythonDriver"
    args = job["args"]
    job_file = args[args.index("-py") + 1]
    assert job_file == dockerfile_env()["PREDICT_JOB_FILE"]
    assert job_file.endswith("/site-packages/fishweight/jobs/predict.py")
    package = importlib.util.find_spec("fishweight.jobs")
    assert any((Path(p) / "predict.py").is_file() for p in package.submodule_search_locations)
    python = args[args.index("-pyclientexec") + 1]
    assert spec["flinkConfiguration"]["python.executable"] == python
    assert python == "/opt/fishweight/venv/bin/python"
