"""The multi-instance deployment files checked against the project, without a container engine.

docker-compose.ha.yml, deploy/ha.env.example, the Dockerfile, .dockerignore and
monitoring/prometheus.yml must name commands, options, modules, settings, files, services and
ports that really exist, so that a rename in the code breaks this test instead of the deployment.
docs/configuration.md must describe every environment variable the settings read and every option
of the management commands.
"""
from __future__ import annotations

import fnmatch
import importlib
import re
import shlex
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.ha.yml"
ENV_EXAMPLE = ROOT / "deploy" / "ha.env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PROMETHEUS = ROOT / "monitoring" / "prometheus.yml"
SETTINGS = ROOT / "quantmesh" / "settings.py"
CONFIG_DOC = ROOT / "docs" / "configuration.md"

# Variables the official images read (postgres) and that are not project settings.
IMAGE_VARS = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}
# Read by the dynamic loader and the C library, not by settings.py.
RUNTIME_VARS = {"LD_PRELOAD"}
# Commands (management commands and the celery subcommands) whose options are documented.
DOCUMENTED_COMMANDS = ("runbot", "reconcile", "simexchange", "loadconfig", "backtest", "notify")


# --- loading -------------------------------------------------------------------------------------

@cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict]:
    return compose()["services"]


def built_services() -> dict[str, dict]:
    """Services that run the project's own image."""
    return {name: svc for name, svc in services().items() if "build" in svc}


def command_of(svc: dict) -> list[str]:
    command = svc.get("command")
    if command is None:
        return dockerfile_cmd()
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def env_of(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def option_value(argv: list[str], option: str) -> str | None:
    for index, arg in enumerate(argv):
        if arg == option and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return None


def env_example() -> dict[str, str]:
    values = {}
    for number, line in enumerate(ENV_EXAMPLE.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert "=" in line, f"{ENV_EXAMPLE.name}:{number}: not NAME=value: {line!r}"
        name, value = line.split("=", 1)
        assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", name), f"{ENV_EXAMPLE.name}:{number}: bad variable name {name!r}"
        values[name] = value
    return values


def interpolated_vars() -> set[str]:
    """Variables compose substitutes from the --env-file (`${VAR}`, `${VAR:-x}`, `${VAR:?msg}`);
    `$${VAR}` is an escape for the container's shell, not a substitution."""
    text = COMPOSE.read_text()
    return set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", text))


@cache
def settings_env_vars() -> set[str]:
    """Environment variables the settings read."""
    text = SETTINGS.read_text()
    names = set(re.findall(r"env_\w+\(\s*\"([A-Z][A-Z0-9_]*)\"", text))
    names |= set(re.findall(r"os\.environ(?:\.get)?[\(\[]\s*\"([A-Z][A-Z0-9_]*)\"", text))
    names |= {f"{name}_FILE" for name in re.findall(r"env_secret\(\s*\"([A-Z][A-Z0-9_]*)\"", text)}
    return names


@cache
def dockerfile_lines() -> list[str]:
    """Instructions with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append((current + stripped).strip())
        current = ""
    return lines


def dockerfile_cmd() -> list[str]:
    import json

    (cmd,) = [line for line in dockerfile_lines() if line.startswith("CMD ")]
    return json.loads(cmd[4:])


@cache
def prometheus_config() -> dict:
    return yaml.safe_load(PROMETHEUS.read_text())


def django_command_parser(name: str):
    from django.core.management import get_commands, load_command_class

    return load_command_class(get_commands()[name], name).create_parser("manage.py", name)


# --- the compose file ------------------------------------------------------------------------------

def test_compose_has_the_ha_topology():
    names = set(services())
    assert {"postgres", "redis", "simulator", "migrate", "web", "prometheus"} <= names, sorted(names)
    roles = {name: command_of(svc) for name, svc in built_services().items()}
    assert any(argv[:3] == ["celery", "-A", "quantmesh"] and "worker" in argv for argv in roles.values()), roles
    beats = [name for name, argv in roles.items() if argv[:3] == ["celery", "-A", "quantmesh"] and "beat" in argv]
    assert len(beats) == 1, f"exactly one Celery beat must run, found {beats}"
    assert services()["postgres"]["image"].split(":")[0] == "postgres"
    assert services()["redis"]["image"].split(":")[0] == "redis"


@pytest.mark.django_db
def test_manage_py_commands_and_their_options_exist():
    from django.core.management import CommandError, get_commands

    known = get_commands()
    checked = 0
    for name, svc in built_services().items():
        argv = command_of(svc)
        if argv[:2] != ["python", "manage.py"]:
            continue
        command = argv[2]
        assert command in known, f"service {name}: `manage.py {command}` is not a management command"
        parser = django_command_parser(command)
        try:
            parser.parse_args(argv[3:])
        except (CommandError, SystemExit) as exc:
            pytest.fail(f"service {name}: `manage.py {' '.join(argv[2:])}` does not parse: {exc}")
        checked += 1
    assert checked >= 4, "expected the simulator, migrate and the runbot services to use manage.py"


def test_celery_services_name_the_project_app_and_real_subcommands():
    from celery import Celery
    from celery.bin.celery import celery as celery_cli

    app = importlib.import_module("quantmesh.celery").app
    assert isinstance(app, Celery)
    group_options = {opt for param in celery_cli.params for opt in (*param.opts, *param.secondary_opts)}
    found = 0
    for name, svc in built_services().items():
        argv = command_of(svc)
        if argv[0] != "celery":
            continue
        found += 1
        assert argv[1:3] == ["-A", "quantmesh"], f"service {name}: celery must load the app with -A quantmesh"
        subcommand = argv[3]
        assert subcommand in celery_cli.commands, f"service {name}: celery has no subcommand {subcommand!r}"
        options = {opt for param in celery_cli.commands[subcommand].params for opt in (*param.opts, *param.secondary_opts)}
        for arg in argv[4:]:
            if arg.startswith("-"):
                flag = arg.split("=", 1)[0]
                assert flag in options | group_options, f"service {name}: `celery {subcommand}` has no option {flag}"
    assert found == 2


def test_beat_schedule_file_is_in_the_writable_var_dir():
    (beat,) = [svc for svc in built_services().values() if "beat" in command_of(svc)]
    schedule = option_value(command_of(beat), "--schedule") or option_value(command_of(beat), "-s")
    assert schedule and schedule.startswith("/app/var/"), (
        "beat writes its schedule file; the image's user can write only /app/var"
    )
    assert any("chown" in line and "/app/var" in line for line in dockerfile_lines())


def test_web_runs_the_project_wsgi_app_under_gunicorn():
    argv = command_of(services()["web"])
    assert argv[0] == "gunicorn"
    target = next(arg for arg in argv[1:] if ":" in arg and not arg.startswith("-") and "/" not in arg)
    module, attribute = target.split(":")
    assert callable(getattr(importlib.import_module(module), attribute)), target
    config = option_value(argv, "-c") or option_value(argv, "--config")
    assert config is not None and (ROOT / config).is_file(), f"gunicorn config {config!r} is not in the repository"
    bind = option_value(argv, "-b") or option_value(argv, "--bind")
    assert bind == "0.0.0.0:8000"
    try:
        from gunicorn.config import Config
    except ImportError:
        return  # the requirements test below reports a missing gunicorn
    parser = Config().parser()
    parser.parse_args(argv[1:])  # exits on an unknown option


def test_gunicorn_conf_only_sets_known_settings():
    gunicorn_config = pytest.importorskip("gunicorn.config", reason="gunicorn is not installed (see the requirements test)")
    import runpy

    known = gunicorn_config.Config().settings
    values = runpy.run_path(str(ROOT / "deploy" / "gunicorn.conf.py"))
    for name in values:
        if name.startswith("_") or name == "os":
            continue
        assert name in known, f"deploy/gunicorn.conf.py sets {name!r}, which gunicorn does not know"
    assert values["workers"] == 1, "one process, so /metrics sees all request metrics"


def test_every_executable_is_installed_by_the_requirements():
    """The image installs requirements.txt; every program a service runs must come from it."""
    pinned = {
        re.split(r"[=<>\[ ]", line.strip(), maxsplit=1)[0].lower()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "-"))
    }
    provided_by = {"celery": "celery", "gunicorn": "gunicorn"}
    for name, svc in built_services().items():
        program = command_of(svc)[0]
        if program == "python":
            continue
        package = provided_by.get(program)
        assert package is not None, f"service {name}: where does {program!r} come from?"
        assert package in pinned, f"service {name} runs {program}, but requirements.txt does not pin {package}"


def test_depends_on_names_services_with_matching_conditions():
    for name, svc in services().items():
        depends = svc.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {target: {"condition": "service_started"} for target in depends}
        for target, spec in depends.items():
            assert target in services(), f"service {name} depends on unknown service {target!r}"
            condition = spec.get("condition", "service_started")
            assert condition in {"service_started", "service_healthy", "service_completed_successfully"}, condition
            target_svc = services()[target]
            if condition == "service_healthy":
                health = target_svc.get("healthcheck") or {}
                assert health.get("test") and not health.get("disable"), (
                    f"service {name} waits for {target} to be healthy, but {target} has no healthcheck"
                )
            if condition == "service_completed_successfully":
                assert str(target_svc.get("restart", "no")) == "no", f"{target} is one-shot: it must not restart"


def test_app_services_wait_for_database_redis_and_migrations():
    for name, svc in built_services().items():
        if name in {"migrate", "simulator"}:
            continue
        depends = svc.get("depends_on") or {}
        for target, condition in (("postgres", "service_healthy"), ("redis", "service_healthy"),
                                  ("migrate", "service_completed_successfully")):
            assert depends.get(target, {}).get("condition") == condition, f"service {name}: {target} {condition}"


def test_built_services_override_the_web_healthcheck_of_the_image():
    """The image's HEALTHCHECK asks the web port; any other role inheriting it would be reported
    unhealthy forever. Each service states its own (or disables it)."""
    for name, svc in built_services().items():
        health = svc.get("healthcheck")
        assert health, f"service {name} inherits the image's web healthcheck"
        if health.get("disable"):
            continue
        test = health["test"]
        assert isinstance(test, list) and test[0] in {"CMD", "CMD-SHELL"}, f"service {name}: healthcheck test {test!r}"
        if test[:3] == ["CMD", "python", "-c"]:
            compile(test[3], f"{name} healthcheck", "exec")


def test_healthchecks_ask_the_port_each_service_listens_on():
    def checked_port(svc: dict) -> int:
        test = " ".join(svc["healthcheck"]["test"])
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", test)
        assert match, test
        return int(match.group(1))

    for name, svc in built_services().items():
        argv = command_of(svc)
        if "runbot" in argv:
            assert checked_port(svc) == int(option_value(argv, "--metrics-port")), name
        elif "simexchange" in argv:
            assert checked_port(svc) == int(option_value(argv, "--port")), name
            assert "/api/v3/ping" in " ".join(svc["healthcheck"]["test"])
        elif argv[0] == "gunicorn":
            assert checked_port(svc) == int((option_value(argv, "-b") or "").rsplit(":", 1)[1]), name
            assert "/healthz" in " ".join(svc["healthcheck"]["test"])
    assert "pg_isready" in " ".join(services()["postgres"]["healthcheck"]["test"])
    assert services()["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]


def test_healthz_is_a_project_url():
    from django.urls import resolve

    assert resolve("/healthz").url_name == "healthz"


def test_redis_never_evicts_and_persists():
    argv = command_of(services()["redis"])
    assert option_value(argv, "--maxmemory-policy") == "noeviction", "lock keys must never be evicted"
    assert option_value(argv, "--appendonly") == "yes"


def test_two_or_more_runbot_instances_share_redis_and_the_simulator():
    runbots = {name: svc for name, svc in built_services().items() if "runbot" in command_of(svc)}
    assert len(runbots) >= 2, f"need two or more runbot services, found {sorted(runbots)}"
    ids = [option_value(command_of(svc), "--instance-id") for svc in runbots.values()]
    assert None not in ids and len(set(ids)) == len(ids), f"--instance-id values must be distinct: {ids}"
    simulator_port = option_value(command_of(services()["simulator"]), "--port")
    for name, svc in runbots.items():
        env = env_of(svc)
        assert env.get("QM_LOCK_BACKEND") == "redis", f"{name}: several instances need QM_LOCK_BACKEND=redis"
        assert urlsplit(env["REDIS_URL"]).hostname == "redis", f"{name}: REDIS_URL must point at the redis service"
        paper = urlsplit(env["QM_PAPER_EXCHANGE_URL"])
        assert (paper.hostname, str(paper.port)) == ("simulator", simulator_port), name
        if "QM_INSTANCE_ID" in env:
            assert env["QM_INSTANCE_ID"] == option_value(command_of(svc), "--instance-id"), name
        assert option_value(command_of(svc), "--metrics-port"), f"{name}: Prometheus scrapes --metrics-port"


def test_every_process_that_takes_locks_uses_the_shared_lock_service():
    """The Celery worker reconciles under the reconcile lock and the admin can start a pass: with
    the no-op lock they would not exclude the bots' passes."""
    for name, svc in built_services().items():
        argv = command_of(svc)
        if "runbot" in argv or "worker" in argv or argv[0] == "gunicorn":
            assert env_of(svc).get("QM_LOCK_BACKEND") == "redis", name


def test_environment_variables_are_settings_the_project_reads():
    read = settings_env_vars()
    for name, svc in services().items():
        for var in env_of(svc):
            if var in RUNTIME_VARS:
                continue
            if "build" in svc:
                assert var in read, f"service {name} sets {var}, which quantmesh/settings.py does not read"
            else:
                assert var in IMAGE_VARS, f"service {name} sets {var}, unknown to its image"


def test_env_example_and_compose_interpolation_agree():
    example = env_example()
    used = interpolated_vars()
    assert used, "the compose file should take its secrets from the env file"
    assert sorted(used - set(example)) == [], "compose uses variables deploy/ha.env.example does not define"
    assert sorted(set(example) - used) == [], "deploy/ha.env.example defines variables compose never uses"
    for secret in ("SECRET_KEY", "POSTGRES_PASSWORD"):
        assert "CHANGE-ME" in example[secret], f"{secret} in the example must be an obvious placeholder"
        assert re.search(r"\$\{" + secret + r":\?", COMPOSE.read_text()), f"compose must refuse to start without {secret}"


def test_repository_volumes_exist():
    for name, svc in services().items():
        for volume in svc.get("volumes") or []:
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"service {name} mounts {source}, which is not in the repository"
            else:
                assert source in (compose().get("volumes") or {}), f"service {name}: named volume {source} is not declared"


# --- prometheus.yml against the compose services ------------------------------------------------

def listening_ports(svc: dict) -> set[int]:
    argv = command_of(svc)
    ports = {int(str(port).split("/")[0]) for port in svc.get("expose") or []}
    for option in ("--metrics-port", "--port"):
        value = option_value(argv, option)
        if value:
            ports.add(int(value))
    bind = option_value(argv, "-b")
    if bind:
        ports.add(int(bind.rsplit(":", 1)[1]))
    return ports


def test_prometheus_targets_are_compose_services_and_ports():
    from django.urls import resolve

    jobs = prometheus_config()["scrape_configs"]
    targets = 0
    for job in jobs:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                if host == "localhost":
                    assert job["job_name"] == "prometheus", target
                    continue
                assert host in services(), f"job {job['job_name']}: {host} is not a compose service"
                svc = services()[host]
                assert int(port) in listening_ports(svc), f"job {job['job_name']}: {host} does not listen on {port}"
                argv = command_of(svc)
                if "runbot" in argv:
                    assert option_value(argv, "--metrics-addr") == "0.0.0.0", (
                        f"{host}: the metrics server must listen on all interfaces to be scraped from another container"
                    )
                if argv[0] == "gunicorn":
                    resolve(job.get("metrics_path", "/metrics"))  # the web app serves it
                targets += 1
    assert targets >= 3, "the web service and two runbot instances must be scraped"


def test_runbot_metrics_can_listen_beyond_loopback():
    """runbot's metrics server binds 127.0.0.1 unless told otherwise; the compose file needs it
    on all interfaces, so the command must take the address."""
    parser = django_command_parser("runbot")
    options = {opt for action in parser._actions for opt in action.option_strings}
    assert "--metrics-addr" in options, "runbot needs a --metrics-addr option (its metrics server binds 127.0.0.1)"


def test_prometheus_honors_the_exported_instance_label():
    for job in prometheus_config()["scrape_configs"]:
        if job["job_name"].startswith("quantmesh-"):
            assert job.get("honor_labels") is True, (
                f"job {job['job_name']}: quantmesh metrics carry an `instance` label (the bot instance)"
            )


def test_prometheus_loads_the_mounted_alert_rules():
    mounts = {}
    for volume in services()["prometheus"]["volumes"]:
        parts = volume.split(":")
        if parts[0].startswith("."):
            mounts[parts[1]] = (ROOT / parts[0]).resolve()
    assert mounts.get("/etc/prometheus/prometheus.yml") == PROMETHEUS.resolve()
    for rule_file in prometheus_config()["rule_files"]:
        assert rule_file in mounts, f"rule file {rule_file} is not mounted into the prometheus service"
        assert mounts[rule_file].is_file()
    command = services()["prometheus"]["command"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in command


# --- Dockerfile -------------------------------------------------------------------------------------

def dockerignore_patterns() -> list[str]:
    return [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]


def ignored(path: str) -> bool:
    result = False
    for pattern in dockerignore_patterns():
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = {pattern, pattern.replace("**/", "")}
        hit = any(
            fnmatch.fnmatch(path, p) or path.startswith(p + "/") for p in candidates
        )
        if hit:
            result = not negate
    return result


def test_dockerfile_copies_files_that_exist_and_are_not_ignored():
    copies = [line for line in dockerfile_lines() if line.startswith("COPY ") and "--from=" not in line]
    assert copies
    for line in copies:
        parts = [p for p in line.split()[1:] if not p.startswith("--")]
        for source in parts[:-1]:
            assert (ROOT / source).exists(), f"Dockerfile: COPY {source}: not in the repository"
            assert not ignored(source), f"Dockerfile: COPY {source}: excluded by .dockerignore"
    copied = " ".join(copies)
    for package in ("quantmesh", "trading", "locking", "reconciliation", "templates", "manage.py"):
        assert package in copied, f"the image lacks {package}"


def test_dockerfile_installs_both_requirement_files_and_mysql_build_deps():
    text = " ".join(dockerfile_lines())
    for requirement in re.findall(r"-r\s+(\S+)", text):
        assert (ROOT / Path(requirement).name).is_file(), requirement
    assert {Path(r).name for r in re.findall(r"-r\s+(\S+)", text)} == {"requirements.txt", "requirements-mysql.txt"}
    for package in ("default-libmysqlclient-dev", "pkg-config", "build-essential"):
        assert package in text
    assert text.count("FROM python:3.11-slim") >= 1


def test_dockerfile_runs_as_a_non_root_user_with_a_web_healthcheck():
    users = [line.split()[1] for line in dockerfile_lines() if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}, "the image must not run as root"
    health = [line for line in dockerfile_lines() if line.startswith("HEALTHCHECK ")]
    assert len(health) == 1 and "/healthz" in health[0]
    import json

    check = json.loads(health[0].split(" CMD ", 1)[1])  # exec form: no shell in the way
    assert check[:2] == ["python", "-c"]
    compile(check[2], "Dockerfile HEALTHCHECK", "exec")
    assert check == services()["web"]["healthcheck"]["test"][1:], "the image and the web service check alike"
    assert any("collectstatic" in line for line in dockerfile_lines())
    assert dockerfile_cmd() == command_of(services()["web"]), "the image's default command is the web service's"


def test_dockerignore_keeps_secrets_and_local_state_out():
    for path in ("deploy/ha.env", ".venv", "var", ".git"):
        assert ignored(path), f".dockerignore must exclude {path}"
    for path in ("deploy/gunicorn.conf.py", "requirements.txt", "trading", "manage.py"):
        assert not ignored(path), f".dockerignore must not exclude {path}"


# --- docs/configuration.md covers the settings and the command options -------------------------

def test_configuration_doc_lists_every_environment_variable():
    doc = CONFIG_DOC.read_text()
    missing = sorted(var for var in settings_env_vars() if f"`{var}`" not in doc)
    assert missing == [], f"docs/configuration.md does not describe {missing}"


@pytest.mark.django_db
def test_configuration_doc_lists_every_command_option():
    from django.core.management.base import BaseCommand

    doc = CONFIG_DOC.read_text()
    missing = []
    for name in DOCUMENTED_COMMANDS:
        parser = django_command_parser(name)
        own = {opt for action in parser._actions for opt in action.option_strings if opt.startswith("--")}
        base = {opt for action in BaseCommand().create_parser("manage.py", name)._actions for opt in action.option_strings}
        for option in sorted(own - base):
            if f"`{option}" not in doc:
                missing.append(f"{name} {option}")
    assert missing == [], f"docs/configuration.md does not describe {missing}"


def test_configuration_doc_lists_every_symbol_parameter():
    from trading.models import Symbol

    doc = CONFIG_DOC.read_text()
    editable = [
        f.name for f in Symbol._meta.concrete_fields
        if f.editable and f.name not in {"id", "account", "symbol", "created_at", "updated_at"}
    ]
    missing = [name for name in editable if f"`{name}`" not in doc]
    assert missing == [], f"docs/configuration.md does not describe symbol fields {missing}"


def test_runbot_services_preload_the_jemalloc_the_image_installs():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "libjemalloc2" in dockerfile and "/usr/local/lib/libjemalloc.so.2" in dockerfile
    bots = {name: svc for name, svc in services().items() if "runbot" in " ".join(map(str, svc.get("command", [])))}
    assert len(bots) >= 2
    for name, svc in bots.items():
        assert env_of(svc).get("LD_PRELOAD") == "/usr/local/lib/libjemalloc.so.2", name
    others = [name for name, svc in services().items() if name not in bots and "LD_PRELOAD" in env_of(svc)]
    assert others == []  # only the bots: the web and Celery processes keep glibc's allocator
