"""The container files agree with the code: Dockerfile contract, docker-compose.yml, .env.example.

(The image itself is built and run by .ci/docker-smoke.sh, which needs a Docker engine.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from monitor.config import ENV_OVERRIDES, load_config

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(
        r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    )
    return [(m.group(1).upper(), m.group(2).strip()) for m in re.finditer(r"^(\w+)\s+(.*)$", joined, re.M)]


def test_dockerfile_contract():
    instructions = _instructions(DOCKERFILE)
    assert instructions[0] == ("ARG", "BASE_IMAGE=python:3.11-slim")
    stages = [args for name, args in instructions if name == "FROM"]
    assert all(stage.startswith("${BASE_IMAGE}") for stage in stages) and len(stages) == 2
    final = instructions[max(i for i, (name, _) in enumerate(instructions) if name == "FROM") :]
    users = [args for name, args in final if name == "USER"]
    assert users and re.fullmatch(r"\$\{UID\}:\$\{UID\}|\d+(:\d+)?", users[-1])
    assert (
        re.search(r"^ARG UID=(\d+)$", DOCKERFILE, re.M)
        and int(re.search(r"ARG UID=(\d+)", DOCKERFILE)[1]) > 0
    )
    env = " ".join(args for name, args in final if name == "ENV")
    assert "MONITOR_DATABASE_URL=sqlite:////data/monitor.db" in env
    assert "MONITOR_HTTP_HOST=0.0.0.0" in env
    assert ("VOLUME", '["/data"]') in final
    assert ("EXPOSE", "8000") in final
    healthcheck = next(args for name, args in final if name == "HEALTHCHECK")
    assert "/healthz" in healthcheck and "curl" not in healthcheck
    assert json.loads(next(args for name, args in final if name == "CMD")) == ["monitor", "run"]
    # Dependencies come before the code, so code changes keep the dependency layer.
    deps_stage = instructions[: max(i for i, (name, _) in enumerate(instructions) if name == "FROM")]
    assert not any(name == "COPY" and "monitor" in args for name, args in deps_stage)
    assert "--no-cache-dir" in DOCKERFILE and "+cpu" in DOCKERFILE


def test_dockerignore_keeps_the_context_small():
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert lines[[line.strip() for line in lines].index("*")] == "*"  # allowlist
    for needed in ("!pyproject.toml", "!README.md", "!monitor/", "!config/", "!models/", "!.docker-wheels/"):
        assert needed in lines


def test_env_example_documents_every_variable():
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.M))
    for variable in [*ENV_OVERRIDES, "MONITOR_CONFIG"]:
        assert variable in documented, f".env.example does not document {variable}"


def test_compose_file_matches_the_image_and_config():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert {"postgres", "monitor"} <= set(services)
    postgres, monitor = services["postgres"], services["monitor"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert "/healthz" in " ".join(monitor["healthcheck"]["test"])
    assert monitor["depends_on"]["postgres"]["condition"] == "service_healthy"
    named = set(compose["volumes"])
    assert any(v.split(":")[0] in named and v.split(":")[1] == "/data" for v in monitor["volumes"])
    assert any(v.split(":")[0] in named for v in postgres["volumes"])
    environment = monitor["environment"]
    assert environment["MONITOR_DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in environment["MONITOR_DATABASE_URL"]
    for variable in environment:
        assert variable in ENV_OVERRIDES, (
            f"docker-compose.yml passes {variable}, which the config does not read"
        )
    for variable in ("SLACK_BOT_TOKEN", "SLACK_CHANNEL", "SLACK_WEBHOOK_URL", "MONITOR_API_TOKEN"):
        assert variable in environment
    assert int(monitor["stop_grace_period"].rstrip("s")) >= 10
    # The mounted configuration is the project's default and loads.
    assert "./config/monitor.yaml:/app/config/monitor.yaml:ro" in monitor["volumes"]
    load_config(ROOT / "config" / "monitor.yaml", environ={})
