"""The compose profile "observability": Prometheus scrapes every service, tracing stays off by default."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from checkout_suite.services import SERVICES
from servicekit.tracing import requested_exporters

ROOT = Path(__file__).resolve().parents[2]


def load(path: str) -> Any:
    return yaml.safe_load((ROOT / path).read_text())


def test_prometheus_scrapes_the_metrics_of_every_service() -> None:
    """deploy/prometheus/prometheus.yml scrapes /metrics of the four compose services on their ports."""
    config = load("deploy/prometheus/prometheus.yml")
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    targets = {
        target: group["labels"]["service"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    assert targets == {f"{name}:{service.port}": name for name, service in SERVICES.items()}


def test_the_profile_starts_prometheus_and_jaeger_with_their_config() -> None:
    """Prometheus (config mounted) and Jaeger (OTLP over HTTP on 4318) start only with the profile."""
    services = load("compose.yaml")["services"]
    for name in ("prometheus", "jaeger"):
        assert services[name]["profiles"] == ["observability"]
    assert any(
        volume.startswith("./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml")
        for volume in services["prometheus"]["volumes"]
    )
    assert "4318:4318" in services["jaeger"]["ports"]
    assert all("profiles" not in services[name] for name in SERVICES)


def test_compose_keeps_tracing_off_unless_asked() -> None:
    """Each service points OTLP at Jaeger, but with its default OTEL_TRACES_EXPORTER nothing is sent."""
    services = load("compose.yaml")["services"]
    for name in SERVICES:
        env = services[name]["environment"]
        defaults = {
            key: re.fullmatch(r"\$\{\w+:-(.*)\}", value).group(1)  # type: ignore[union-attr]
            for key, value in env.items()
            if key.startswith("OTEL_")
        }
        assert defaults == {
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318",
        }
        assert requested_exporters(defaults) == []
        assert requested_exporters({**defaults, "OTEL_TRACES_EXPORTER": "otlp"}) == ["otlp"]
