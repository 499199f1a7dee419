"""Reading /metrics as Prometheus does: prometheus_client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

TOKEN = "metrics-test-token-6f1d2c"


def scrape(client) -> list:  # type: ignore[no-untyped-def]
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.status_code
    return list(text_string_to_metric_families(response.content.decode()))


def samples(families: list, name: str, **labels: str) -> list[Sample]:
    return [
        sample
        for family in families
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]


def value(families: list, name: str, **labels: str) -> float:
    """The one sample of `name` with these labels (the test fails if there are none or several)."""
    found = samples(families, name, **labels)
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
    return found[0].value
