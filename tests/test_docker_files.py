"""The files of the Docker stack (docker/) agree with themselves and with the project.

No Docker engine is needed or used: these tests read docker/compose.yaml, the Dockerfiles,
.env.example, the init SQL and the Grafana provisioning, and compare them with the code,
conf/, the Makefile, the README and requirements.lock. See docs/stack.md.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from sqlalchemy.engine import make_url

from nextday import config

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
TRAIN_DOCKERFILE = DOCKER / "train.Dockerfile"
SERVE_DOCKERFILE = DOCKER / "serve.Dockerfile"
GRAFANA_DATASOURCE = DOCKER / "grafana" / "provisioning" / "datasources" / "nextday.yaml"
GRAFANA_PROVIDER = DOCKER / "grafana" / "provisioning" / "dashboards" / "nextday.yaml"
GRAFANA_DASHBOARD = DOCKER / "grafana" / "dashboards" / "nextday-monitor.json"

# one-shot containers; every other service runs until stopped and must say when it is healthy
JOBS = {"minio-setup", "train"}
EXPECTED_SERVICES = {"timescaledb", "minio", "minio-setup", "mlflow", "grafana", "serve", "train"}
# the environment variables through which the stack configures the code (read in src/ or conf/)
CODE_VARIABLES = ("NEXTDAY_PG_PASSWORD", "NEXTDAY_PG_URL", "NEXTDAY_PREDICTION_LOG_URL")
SECRET_WORDS = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|ACCESS_KEY", re.IGNORECASE)
# compose interpolation: ${VAR}, ${VAR:-x}, ${VAR:?x} or $VAR; `$$` is a literal dollar
COMPOSE_VARIABLE = re.compile(r"(?<!\$)\$(?:\{([A-Za-z_]\w*)|([A-Za-z_]\w*))")


# ---------------------------------------------------------------------------------------------
# reading the files


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"docker/.env.example: not NAME=value: {line!r}"
            values[name.strip()] = value.strip()
    return values


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions, current = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or not (line or current):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, arguments = current.strip().partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        current = ""
    assert not current, f"{path.name} ends inside a continued line"
    return instructions


def exec_form(arguments: str) -> list[str]:
    """A JSON-array instruction's words (ENTRYPOINT, CMD, HEALTHCHECK ... CMD)."""
    words = json.loads(arguments)
    assert isinstance(words, list) and all(isinstance(w, str) for w in words), arguments
    return words


def last(instructions, keyword: str) -> str:
    found = [arguments for k, arguments in instructions if k == keyword]
    assert found, f"no {keyword} instruction"
    return found[-1]


def copies(path: Path) -> list[tuple[list[str], str, str]]:
    """(sources, destination, WORKDIR at that point) of each COPY/ADD of a Dockerfile."""
    result, workdir = [], "/"
    for keyword, arguments in dockerfile(path):
        if keyword == "WORKDIR":
            workdir = os.path.normpath(os.path.join(workdir, arguments))
        elif keyword in {"COPY", "ADD"}:
            words = exec_form(arguments) if arguments.startswith("[") else arguments.split()
            words = [w for w in words if not w.startswith("--")]
            assert len(words) >= 2, f"{path.name}: {keyword} {arguments}"
            result.append((words[:-1], words[-1], workdir))
    return result


def dockerfile_env(path: Path) -> dict[str, str]:
    env = {}
    for keyword, arguments in dockerfile(path):
        if keyword == "ENV":
            for name, value in re.findall(r"(\w+)=(\"[^\"]*\"|\S*)", arguments):
                env[name] = value.strip('"')
    return env


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def command(service: dict) -> list[str]:
    words = service.get("command") or []
    return words.split() if isinstance(words, str) else [str(w) for w in words]


def option(words: list[str], name: str) -> str:
    """The value of `--name value` or `--name=value` in a command line."""
    for i, word in enumerate(words):
        if word == name:
            return words[i + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    raise AssertionError(f"{name} not in {words}")


def published(service: dict) -> dict[int, int]:
    """container port -> host port of a service's `ports`."""
    mapping = {}
    for entry in service.get("ports") or []:
        parts = str(entry).split("/")[0].split(":")
        mapping[int(parts[-1])] = int(parts[-2]) if len(parts) > 1 else int(parts[-1])
    return mapping


def healthcheck_words(service: dict) -> list[str]:
    test = (service.get("healthcheck") or {}).get("test") or []
    return [test] if isinstance(test, str) else [str(w) for w in test]


def dockerfile_of(service: dict) -> Path | None:
    build = service.get("build")
    if build is None:
        return None
    if isinstance(build, str):
        build = {"context": build}
    context = (DOCKER / build["context"]).resolve()
    return context / build.get("dockerfile", "Dockerfile")


def has_healthcheck(service: dict) -> bool:
    """A health check in compose.yaml, or the HEALTHCHECK of the image the service builds."""
    if service.get("healthcheck"):
        return not service["healthcheck"].get("disable") and bool(healthcheck_words(service))
    path = dockerfile_of(service)
    return path is not None and any(k == "HEALTHCHECK" for k, _ in dockerfile(path))


def serve_model_uri() -> str:
    words = exec_form(last(dockerfile(SERVE_DOCKERFILE), "ENTRYPOINT"))
    found = re.findall(r"models:/[^\s\"']+", " ".join(words))
    assert len(found) == 1, f"serve.Dockerfile: expected one models:/ URI in {words}"
    return found[0]


def lock_version(package: str) -> str:
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        name, _, version = line.strip().partition("==")
        if name.lower().replace("_", "-") == package:
            return version
    raise AssertionError(f"{package} not in requirements.lock")


def store_default_url() -> str:
    """conf/store/postgres.yaml's default URL (what `${oc.env:NEXTDAY_PG_URL,...}` falls to)."""
    url = yaml.safe_load((ROOT / "conf" / "store" / "postgres.yaml").read_text())["url"]
    match = re.fullmatch(r"\$\{oc\.env:NEXTDAY_PG_URL,(.+)\}", url)
    return match.group(1) if match else url


def code_and_conf_text() -> str:
    files = [*(ROOT / "src").rglob("*.py"), *(ROOT / "conf").rglob("*.yaml")]
    return "\n".join(p.read_text() for p in files)


def text_files_in_docker() -> list[Path]:
    # docker/.env is the user's filled-in copy (git-ignored): not part of the project
    return sorted(
        p
        for p in DOCKER.rglob("*")
        if p.is_file() and p.name != ".env" and "__pycache__" not in p.parts
    )


# ---------------------------------------------------------------------------------------------
# compose.yaml: structure


def test_compose_has_the_stack(services):
    assert set(services) == EXPECTED_SERVICES
    assert services["train"].get("profiles"), "the training job runs only on request (a profile)"
    for name in set(services) - {"train"}:
        assert not services[name].get("profiles"), f"{name} should start with `up`"


def test_long_running_services_have_a_healthcheck(services):
    for name, service in services.items():
        if name in JOBS:
            assert str(service.get("restart", "no")) == "no", f"{name} is one-shot"
            continue
        assert has_healthcheck(service), f"{name}: no healthcheck in compose.yaml nor its image"


def test_depends_on_names_services_and_sensible_conditions(services):
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {d: {"condition": "service_started"} for d in depends}
        for other, spec in depends.items():
            assert other in services, f"{name} depends on unknown service {other}"
            condition = spec.get("condition", "service_started")
            if condition == "service_healthy":
                assert has_healthcheck(services[other]), (
                    f"{name} waits for {other} to be healthy, which has no healthcheck"
                )
            elif condition == "service_completed_successfully":
                assert other in JOBS, f"{name} waits for {other} to exit, but it runs forever"
            else:
                pytest.fail(
                    f"{name} -> {other}: condition {condition!r} (expected healthy/completed)"
                )
    waited_for = {d for s in services.values() for d in (s.get("depends_on") or {})}
    assert "train" not in waited_for, "nothing may wait for the training job"


def test_build_contexts_and_dockerfiles_exist(services):
    built = {name: s for name, s in services.items() if s.get("build")}
    assert {"mlflow", "serve", "train"} <= set(built)
    for name, service in built.items():
        build = service["build"]
        assert (DOCKER / build["context"]).resolve() == ROOT, (
            f"{name}: context is not the repo root"
        )
        path = dockerfile_of(service)
        assert path.is_file(), f"{name}: {path} is missing"
    assert dockerfile_of(services["serve"]) == SERVE_DOCKERFILE
    assert dockerfile_of(services["train"]) == TRAIN_DOCKERFILE


def test_images_are_pinned(services):
    for name, service in services.items():
        image = service.get("image")
        if service.get("build"):
            continue
        assert image and ":" in image.rsplit("/", 1)[-1], f"{name}: image {image!r} has no tag"
        tag = image.rsplit(":", 1)[1]
        assert tag != "latest" and not tag.startswith("latest-"), f"{name}: pin {image}"
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb:2.")
    assert services["timescaledb"]["image"].endswith("-pg15")
    assert services["grafana"]["image"].startswith("grafana/grafana:")


def test_mounted_host_paths_exist_and_volumes_are_declared(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for entry in service.get("volumes") or []:
            source = entry["source"] if isinstance(entry, dict) else entry.split(":")[0]
            if source.startswith((".", "/", "~")):
                path = (DOCKER / source).resolve()
                assert path.exists(), f"{name} mounts {source}, which does not exist ({path})"
            else:
                assert source in declared, f"{name}: named volume {source} is not declared"


# ---------------------------------------------------------------------------------------------
# variables and secrets


def test_every_compose_variable_is_in_env_example():
    used = {a or b for a, b in COMPOSE_VARIABLE.findall(COMPOSE_FILE.read_text())}
    listed = set(env_example())
    assert used, "compose.yaml takes no variable?"
    assert used <= listed, f"missing from docker/.env.example: {sorted(used - listed)}"
    assert listed <= used, f"unused in docker/compose.yaml: {sorted(listed - used)}"


def test_env_example_holds_no_secret():
    for name, value in env_example().items():
        if SECRET_WORDS.search(name) or name.endswith("_USER"):
            assert value == "", f"docker/.env.example: {name} must be empty, not {value!r}"
    text = ENV_EXAMPLE.read_text()
    assert "cp docker/.env.example docker/.env" in text
    assert ".env" in (DOCKER / ".gitignore").read_text().split(), "docker/.env must be ignored"


def test_secrets_in_compose_come_from_variables(services):
    for name, service in services.items():
        for key, value in environment(service).items():
            if SECRET_WORDS.search(key):
                assert re.fullmatch(r"\$\{\w+(:\?[^}]*)?\}", value), (
                    f"{name}: {key} must be a required ${{VARIABLE}}, not {value!r}"
                )


# a key that names a secret, then `:`/`=`, then the value (up to a quote, comma or space)
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)([\w.-]*(?:password|passwd|secret|token|access_key)[\w.-]*)[\"']?\s*[:=]\s*[\"']?([^\s\"',}]*)"
)
# user:password@ inside a URL
_URL_PASSWORD = re.compile(r"://[^/@\s:\"']+:([^/@\s\"']+)@")


def test_no_literal_password_in_docker_files():
    checked = 0
    for path in text_files_in_docker():
        for number, raw in enumerate(path.read_text().splitlines(), start=1):
            line = raw.strip()
            if line.startswith(("#", "--", "//")):
                continue
            where = f"{path.relative_to(ROOT)}:{number}"
            for key, value in _SECRET_ASSIGNMENT.findall(line):
                checked += 1
                assert value == "" or value.startswith("$"), (
                    f"{where}: {key} has a literal value; take it from the environment"
                )
            for value in _URL_PASSWORD.findall(line):
                assert value.startswith("$"), f"{where}: a password inside a URL"
    assert checked, "no password setting found at all: is the scan broken?"


def test_dockerfiles_bake_in_no_secret():
    for path in (TRAIN_DOCKERFILE, SERVE_DOCKERFILE):
        for keyword, arguments in dockerfile(path):
            if keyword in {"ENV", "ARG"}:
                assert not SECRET_WORDS.search(arguments), f"{path.name}: {keyword} {arguments}"


def test_compose_sets_the_variables_the_code_reads(services):
    code = code_and_conf_text()
    missing = [name for name in CODE_VARIABLES if name not in code]
    assert not missing, f"compose sets {missing}, which nothing in src/ or conf/ reads"
    serve, train = environment(services["serve"]), environment(services["train"])
    assert {"NEXTDAY_PREDICTION_LOG_URL", "NEXTDAY_PG_PASSWORD"} <= set(serve)
    assert {"NEXTDAY_PG_URL", "NEXTDAY_PG_PASSWORD"} <= set(train)
    # the Dockerfile's NEXTDAY_ROOT is what conf/paths reads for paths.root
    assert "NEXTDAY_ROOT" in dockerfile_env(TRAIN_DOCKERFILE)
    assert "oc.env:NEXTDAY_ROOT" in (ROOT / "conf" / "paths" / "default.yaml").read_text()
    # every NEXTDAY_* the stack sets is read by the code, conf/ or (NEXTDAY_MODEL) the image
    serve_image = SERVE_DOCKERFILE.read_text()
    for service in services.values():
        for name in environment(service):
            if name.startswith("NEXTDAY_"):
                assert name in code or f"${{{name}" in serve_image, f"nothing reads {name}"
    assert "store=postgres" in command(services["train"])
    assert (ROOT / "conf" / "store" / "postgres.yaml").is_file()


# ---------------------------------------------------------------------------------------------
# ports, hosts, databases


def test_mlflow_server_port_and_clients_agree(services):
    mlflow = services["mlflow"]
    words = [*mlflow.get("entrypoint", []), *command(mlflow)]
    assert words[:2] == ["mlflow", "server"]
    port = int(option(words, "--port"))
    assert port == 5000, "docs, README and `mlflow ui` use port 5000"
    assert option(words, "--host") == "0.0.0.0"
    assert published(mlflow).get(port) == port
    health = " ".join(healthcheck_words(mlflow))
    assert f":{port}/health" in health, health
    assert f"127.0.0.1:{port}" in (ROOT / "README.md").read_text()
    allowed = option(words, "--allowed-hosts").split(",")
    for name, service in services.items():
        uri = environment(service).get("MLFLOW_TRACKING_URI")
        if uri is None:
            continue
        parts = urlsplit(uri)
        assert (parts.hostname, parts.port) == ("mlflow", port), f"{name}: {uri}"
        # MLflow 3 answers 403 to a Host header it does not allow
        assert any(fnmatch.fnmatch(parts.netloc, pattern) for pattern in allowed), (
            f"{name} calls {parts.netloc}, which --allowed-hosts refuses"
        )
    assert {"serve", "train"} <= {
        n for n, s in services.items() if "MLFLOW_TRACKING_URI" in environment(s)
    }


def test_mlflow_backend_and_artifacts(services):
    mlflow = services["mlflow"]
    words = command(mlflow)
    backend = make_url(option(words, "--backend-store-uri"))
    db = services["timescaledb"]
    assert backend.drivername == "postgresql+psycopg2"
    assert (backend.host, backend.port) == ("timescaledb", 5432)
    assert backend.username == environment(db)["POSTGRES_USER"]
    assert backend.password is None or str(backend.password).startswith("$")
    if backend.password is None:
        assert environment(mlflow).get("PGPASSWORD") == environment(db)["POSTGRES_PASSWORD"]
    init_sql = (DOCKER / "postgres" / "init.sql").read_text()
    assert re.search(rf"CREATE DATABASE {backend.database}\b", init_sql, re.IGNORECASE)
    init_mounts = [v for v in db["volumes"] if "/docker-entrypoint-initdb.d/" in v]
    assert init_mounts and init_mounts[0].startswith("./postgres/init.sql:")

    destination = urlsplit(option(words, "--artifacts-destination"))
    assert destination.scheme == "s3"
    setup = " ".join(command(services["minio-setup"]))
    assert re.search(rf"mc mb (--ignore-existing )?\S+/{destination.netloc}\b", setup)
    assert destination.netloc == "nextday-artifacts"
    env = environment(mlflow)
    endpoint = urlsplit(env["MLFLOW_S3_ENDPOINT_URL"])
    assert endpoint.hostname == "minio" and endpoint.port == 9000
    assert 9000 in published(services["minio"])
    minio = environment(services["minio"])
    assert env["AWS_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"]
    assert env["AWS_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"]


def test_postgres_agrees_with_the_store_config(services):
    default = make_url(store_default_url())
    db = services["timescaledb"]
    env = environment(db)
    assert default.drivername == "postgresql+psycopg2"
    assert default.port == 5432 and published(db).get(5432) == 5432
    assert env["POSTGRES_USER"] == default.username == "nextday"
    assert env["POSTGRES_DB"] == default.database == "nextday"
    assert env["POSTGRES_PASSWORD"].startswith("${NEXTDAY_PG_PASSWORD")
    check = healthcheck_words(db)
    assert "pg_isready" in check and env["POSTGRES_USER"] in check and env["POSTGRES_DB"] in check
    for service, variable in (("train", "NEXTDAY_PG_URL"), ("serve", "NEXTDAY_PREDICTION_LOG_URL")):
        url = make_url(environment(services[service])[variable])
        assert url.password is None, f"{service}: {variable} must carry no password"
        assert (url.drivername, url.username, url.database, url.port) == (
            default.drivername,
            default.username,
            default.database,
            default.port,
        )
        assert url.host == "timescaledb"
        assert environment(services[service])["NEXTDAY_PG_PASSWORD"] == env["POSTGRES_PASSWORD"]
    # steps that open the store as Store(cfg.store.url), without password_env (backtest,
    # monitor), get the password from PGPASSWORD
    assert environment(services["train"])["PGPASSWORD"] == env["POSTGRES_PASSWORD"]


def test_serving_port_agrees_with_the_makefile(services):
    makefile = (ROOT / "Makefile").read_text()
    port = int(re.search(r"^PORT \?= (\d+)$", makefile, re.MULTILINE).group(1))
    assert port == 5001
    instructions = dockerfile(SERVE_DOCKERFILE)
    entrypoint = " ".join(exec_form(last(instructions, "ENTRYPOINT")))
    assert f"-p {port}" in entrypoint and "-h 0.0.0.0" in entrypoint
    assert "mlflow models serve" in entrypoint and "--env-manager local" in entrypoint
    assert last(instructions, "EXPOSE").split() == [str(port)]
    healthcheck = last(instructions, "HEALTHCHECK")
    assert f"http://127.0.0.1:{port}/ping" in healthcheck
    assert published(services["serve"]).get(port) == port


def test_grafana_service(services):
    grafana = services["grafana"]
    env = environment(grafana)
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${")
    assert env["NEXTDAY_PG_PASSWORD"] == environment(services["timescaledb"])["POSTGRES_PASSWORD"]
    assert published(grafana).get(3000) == 3000
    assert "/api/health" in " ".join(healthcheck_words(grafana))
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert mounts["./grafana/dashboards"] == "/var/lib/grafana/dashboards"
    assert all(v.endswith(":ro") for v in grafana["volumes"] if v.startswith("./"))


def test_grafana_datasource_points_at_the_store(services):
    if not GRAFANA_DATASOURCE.is_file():
        pytest.skip("docker/grafana/provisioning/datasources/nextday.yaml not written yet")
    sources = yaml.safe_load(GRAFANA_DATASOURCE.read_text())["datasources"]
    store = next(s for s in sources if s.get("uid") == "nextday-store")
    env = environment(services["timescaledb"])
    host, _, port = store["url"].partition(":")
    assert host == "timescaledb" and int(port or 5432) == 5432
    assert store["user"] == env["POSTGRES_USER"]
    database = (store.get("jsonData") or {}).get("database") or store.get("database")
    assert database == env["POSTGRES_DB"]
    password = (store.get("secureJsonData") or {}).get("password", "")
    assert password in {"$NEXTDAY_PG_PASSWORD", "${NEXTDAY_PG_PASSWORD}"}
    assert "NEXTDAY_PG_PASSWORD" in environment(services["grafana"])


def test_grafana_dashboards_are_provisioned_from_the_mounted_folder(services):
    if not GRAFANA_PROVIDER.is_file():
        pytest.skip("docker/grafana/provisioning/dashboards/nextday.yaml not written yet")
    providers = yaml.safe_load(GRAFANA_PROVIDER.read_text())["providers"]
    mounted = {v.split(":")[1] for v in services["grafana"]["volumes"]}
    for provider in providers:
        assert provider["options"]["path"] in mounted
    if not GRAFANA_DASHBOARD.is_file():
        pytest.skip("docker/grafana/dashboards/nextday-monitor.json not written yet")
    uids = set()

    def walk(node):
        if isinstance(node, dict):
            source = node.get("datasource")
            if isinstance(source, dict) and isinstance(source.get("uid"), str):
                uids.add(source["uid"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(GRAFANA_DASHBOARD.read_text()))
    ours = {u for u in uids if not u.startswith(("-- ", "$", "${"))}
    assert ours, "the dashboard queries no datasource"
    if GRAFANA_DATASOURCE.is_file():
        provisioned = {
            s["uid"] for s in yaml.safe_load(GRAFANA_DATASOURCE.read_text())["datasources"]
        }
        assert ours <= provisioned, f"dashboard uses datasources {sorted(ours - provisioned)}"


# ---------------------------------------------------------------------------------------------
# the images


@pytest.mark.parametrize("path", [TRAIN_DOCKERFILE, SERVE_DOCKERFILE], ids=lambda p: p.name)
def test_image_python_matches_requires_python(path):
    base = last(dockerfile(path), "FROM").split()[0]
    match = re.fullmatch(r"python:(\d+\.\d+)(?:\.\d+)?-slim(?:-\w+)?", base)
    assert match, f"{path.name}: base image {base}"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert SpecifierSet(requires).contains(match.group(1) + ".0"), (base, requires)
    assert "python=" + match.group(1) in (ROOT / "conda.yaml").read_text()


@pytest.mark.parametrize("path", [TRAIN_DOCKERFILE, SERVE_DOCKERFILE], ids=lambda p: p.name)
def test_image_installs_the_locked_project_as_non_root(path):
    instructions = dockerfile(path)
    installs = [a for k, a in instructions if k == "RUN" and "pip install" in a]
    assert installs and all("-c requirements.lock" in a for a in installs), installs
    user = last(instructions, "USER").split(":")[0]
    assert user not in {"root", "0"}
    # the last USER comes after every RUN: nothing runs as root at run time
    position = max(i for i, (k, _) in enumerate(instructions) if k == "USER")
    assert all(k != "RUN" for k, _ in instructions[position:])
    # uvicorn (MLflow's server) lands on PATH: the system interpreter, or a venv put on PATH
    if "venv" in path.read_text():
        assert "venv" in dockerfile_env(path).get("PATH", ""), "a venv's bin must be on PATH"
    assert lock_version("uvicorn")


@pytest.mark.parametrize("path", [TRAIN_DOCKERFILE, SERVE_DOCKERFILE], ids=lambda p: p.name)
def test_copy_sources_exist_and_reach_the_build(path):
    ignore = path.with_name(path.name + ".dockerignore")
    allowed = None
    if ignore.is_file():
        lines = [line.strip() for line in ignore.read_text().splitlines()]
        assert "*" in lines, f"{ignore.name}: expected an allow-list (`*`, then `!path`)"
        allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for sources, _, _ in copies(path):
        for source in sources:
            assert (ROOT / source).exists(), f"{path.name}: COPY {source}: no such file"
            if allowed is not None:
                assert source.rstrip("/") in allowed, f"{ignore.name} leaves {source} out"


@pytest.mark.parametrize("path", [TRAIN_DOCKERFILE, SERVE_DOCKERFILE], ids=lambda p: p.name)
def test_image_has_conf_where_the_code_looks_for_it(path):
    """nextday.config finds conf/ through the package's conf link (src/nextday/conf ->
    ../../conf): the image installs src/ editable (the package stays in place) with conf/
    copied where that link points."""
    relative = os.path.relpath(config.CONF_DIR, Path(config.__file__).parent)
    destinations = {}
    for sources, destination, workdir in copies(path):
        for source in sources:
            destinations[source.rstrip("/")] = os.path.normpath(os.path.join(workdir, destination))
    package = os.path.join(destinations["src"], "nextday")
    assert os.path.normpath(os.path.join(package, relative)) == destinations["conf"]
    final = [a for k, a in dockerfile(path) if k == "RUN" and "pip install" in a][-1]
    assert re.search(r"(-e|--editable) \.", final), "the image installs src/ editable"


def test_train_image_runs_steps(services):
    instructions = dockerfile(TRAIN_DOCKERFILE)
    assert exec_form(last(instructions, "ENTRYPOINT")) == ["python", "-m", "nextday"]
    entry_points = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]
    assert exec_form(last(instructions, "CMD"))[0] in entry_points
    assert command(services["train"])[0] in entry_points
    root = dockerfile_env(TRAIN_DOCKERFILE)["NEXTDAY_ROOT"]
    assert any(v.endswith(":" + root) for v in services["train"]["volumes"]), (
        "the train job should keep paths.root in a volume"
    )


def test_served_model_is_a_registered_model_of_the_code(services):
    uri = serve_model_uri()
    match = re.fullmatch(r"models:/(.+)\$\{NEXTDAY_MODEL:-(\w+)\}@(\w+)", uri)
    assert match, uri
    prefix, default, alias = match.groups()
    export = yaml.safe_load((ROOT / "conf" / "export" / "default.yaml").read_text())
    assert prefix == export["registered_model_prefix"] == "nextday-"
    models = {
        yaml.safe_load(p.read_text())["name"] for p in (ROOT / "conf" / "model").glob("*.yaml")
    }
    assert models == {"normal", "earnings"}
    assert alias == "production"
    registry = (ROOT / "src" / "nextday" / "export" / "registry.py").read_text()
    assert f'"{alias}"' in registry, "the registry's production alias"
    assert default in models
    assert dockerfile_env(SERVE_DOCKERFILE).get("NEXTDAY_MODEL", default) in models
    assert env_example()["NEXTDAY_MODEL"] in models
    compose_default = re.fullmatch(
        r"\$\{NEXTDAY_MODEL:-(\w+)\}", environment(services["serve"])["NEXTDAY_MODEL"]
    )
    assert compose_default and compose_default.group(1) in models


def test_mlflow_version_is_the_locked_one(services):
    locked = lock_version("mlflow")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert f"mlflow=={locked}" in project["dependencies"]
    # the tracking server runs the project image (installed from requirements.lock) ...
    assert dockerfile_of(services["mlflow"]) == TRAIN_DOCKERFILE
    # ... and any image or pin that names MLflow names the same version
    for path in (COMPOSE_FILE, TRAIN_DOCKERFILE, SERVE_DOCKERFILE):
        for version in re.findall(r"mlflow(?:==|:v?)(\d+\.\d+\.\d+)", path.read_text()):
            assert version == locked, f"{path.name} pins MLflow {version}, the lock {locked}"
