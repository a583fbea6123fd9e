"""docker-compose.yml wiring, checked without Docker (there is none on this machine)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from infra.settings import Settings

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
SERVICES = {"kafka", "qdrant", "vllm", "pgenrm", "prometheus", "grafana"}
_VAR = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose-style ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` substitution."""

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        if env.get(name):
            return env[name]
        if op == "?":
            raise KeyError(f"{name}: {arg}")
        return arg if op == "-" else ""

    return _VAR.sub(sub, text)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    text = interpolate(COMPOSE.read_text(), {"PGENRM_API_TOKEN": "test-token"})
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def published(service: dict[str, Any]) -> dict[int, int]:
    """container port -> host port."""
    out = {}
    for spec in service.get("ports", []):
        parts = str(spec).split(":")
        out[int(parts[-1])] = int(parts[-2])
    return out


def test_api_token_is_required() -> None:
    with pytest.raises(KeyError, match="PGENRM_API_TOKEN"):
        interpolate(COMPOSE.read_text(), {})


def test_all_services_present_with_healthchecks(services: dict[str, Any]) -> None:
    assert set(services) == SERVICES
    for name, svc in services.items():
        test = svc.get("healthcheck", {}).get("test")
        assert test, f"{name} has no healthcheck"


def test_depends_on_waits_for_healthy_services(services: dict[str, Any]) -> None:
    edges = 0
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: depends_on must use conditions"
        for dep, cond in deps.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert cond == {"condition": "service_healthy"}, (name, dep)
            assert services[dep].get("healthcheck"), f"{dep} has no healthcheck"
            edges += 1
    assert set(services["pgenrm"]["depends_on"]) == {"kafka", "qdrant", "vllm"}
    assert edges >= 5


def test_named_volumes_are_declared(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            source = str(vol).split(":")[0]
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"


def test_kafka_is_single_node_kraft(services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    env = env_of(kafka)
    assert kafka["image"].startswith("apache/kafka:")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert any(str(v).endswith(":/var/lib/kafka/data") for v in kafka["volumes"])
    assert env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    assert "9092" in " ".join(kafka["healthcheck"]["test"])


def test_qdrant_server(services: dict[str, Any]) -> None:
    q = services["qdrant"]
    assert q["image"].startswith("qdrant/qdrant")
    assert set(published(q)) == {6333, 6334}
    assert any(str(v).endswith(":/qdrant/storage") for v in q["volumes"])
    assert "/readyz" in " ".join(q["healthcheck"]["test"])


def test_vllm_gets_a_gpu(services: dict[str, Any]) -> None:
    v = services["vllm"]
    assert v["image"].startswith("vllm/vllm-openai")
    devices = v["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert v.get("ipc") == "host" or v.get("shm_size")
    assert any(str(x).endswith(":/root/.cache/huggingface") for x in v["volumes"])
    assert "/health" in " ".join(v["healthcheck"]["test"])


def test_pgenrm_env_configures_settings(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = env_of(services["pgenrm"])
    for key in list(__import__("os").environ):
        if key.startswith("PGENRM_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = Settings()
    assert s.broker.embedded is False
    host, port = s.broker.bootstrap[0].split(":")
    assert host in services and host == "kafka" and port == "9092"
    assert s.qdrant.mode == "server"
    q = urlparse(s.qdrant.url or "")
    assert (q.hostname, q.port) == ("qdrant", 6333)
    assert s.models.backend == "openai"
    o = urlparse(s.models.openai_base_url or "")
    assert (o.hostname, o.port, o.path) == ("vllm", 8000, "/v1")
    assert s.api.host == "0.0.0.0"
    assert s.api.token is not None and s.api.token.get_secret_value() == "test-token"
    assert str(s.data_dir) == "/data"
    # the model pgenrm asks vLLM for is the model vLLM serves
    served = services["vllm"]["command"]
    assert served[served.index("--model") + 1] == s.models.model
    assert published(services["pgenrm"]).get(s.api.port) == s.api.port
    assert "up" in services["pgenrm"]["command"]


def test_dockerfile(services: dict[str, Any]) -> None:
    build = services["pgenrm"]["build"]
    dockerfile = REPO / build["context"] / build["dockerfile"]
    assert dockerfile.is_file()
    text = dockerfile.read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert "-c infra/requirements.lock" in text
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in {"root", "0"}
    assert "HEALTHCHECK" in text and "/healthz" in text
    for src in re.findall(r"^COPY (\S+) ", text, re.M):
        assert (REPO / build["context"] / src).exists(), f"COPY source {src} missing"
    assert (REPO / "infra" / "requirements.lock").is_file()


def test_prometheus_scrapes_pgenrm(services: dict[str, Any]) -> None:
    mount = next(v for v in services["prometheus"]["volumes"] if "prometheus.yml" in v)
    config = yaml.safe_load((REPO / mount.split(":")[0]).read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "pgenrm")
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    port = env_of(services["pgenrm"])["PGENRM_API__PORT"]
    assert targets == [f"pgenrm:{port}"]


def _grafana_files(services: dict[str, Any]) -> tuple[Path, Path]:
    vols = [str(v).split(":") for v in services["grafana"]["volumes"]]
    prov = next(REPO / src for src, dst, *_ in vols if dst == "/etc/grafana/provisioning")
    dash = next(REPO / src for src, dst, *_ in vols if dst.endswith(".json"))
    return prov, dash


def test_grafana_is_provisioned(services: dict[str, Any]) -> None:
    prov, dash_path = _grafana_files(services)
    ds = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert urlparse(ds["url"]).hostname == "prometheus"
    assert urlparse(ds["url"]).port in published(services["prometheus"])
    providers = yaml.safe_load((prov / "dashboards" / "pgenrm.yml").read_text())["providers"]
    dash_dst = next(
        str(v).split(":")[1] for v in services["grafana"]["volumes"] if str(v).endswith(".json:ro")
    )
    assert dash_dst.startswith(providers[0]["options"]["path"] + "/")
    dash = json.loads(dash_path.read_text())
    uids = {p["datasource"]["uid"] for p in dash["panels"]}
    assert uids == {ds["uid"]}
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("processed", "dead-lettered", "latency", "cold-start", "accuracy", "lag"):
        assert topic in titles


def _defined_metric_names() -> set[str]:
    """Every ``"pgenrm_*"`` string literal in the package sources."""
    names: set[str] = set()
    for pkg in ("infra", "stream", "reward", "prototypes"):
        for path in (REPO / pkg).rglob("*.py"):
            names |= set(re.findall(r"[\"'](pgenrm_[a-z0-9_]+)[\"']", path.read_text()))
    return names


def test_dashboard_queries_only_metrics_that_exist(services: dict[str, Any]) -> None:
    _, dash_path = _grafana_files(services)
    dash = json.loads(dash_path.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"pgenrm_[a-z0-9_]+", e)}
    defined = _defined_metric_names()
    for metric in sorted(used):
        base = re.sub(r"_(total|bucket|sum|count)$", "", metric)
        assert metric in defined or base in defined, f"dashboard uses undefined {metric}"
    assert any("histogram_quantile" in e and "mode" in e for e in exprs)
