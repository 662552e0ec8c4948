"""Workers count every outcome and pickup in Redis, so all processes add to the same metrics.

Here: how labels are folded. The counts across real worker processes:
``tests/processes/test_metrics_across_processes.py``.
"""

from __future__ import annotations

import pytest

from jobs import metrics, registry

pytestmark = pytest.mark.django_db(transaction=True)


def test_labels_outside_the_registry_and_configuration_are_folded():
    assert metrics.type_label("no.such.type") == "unregistered"
    assert metrics.queue_label("some-adhoc-queue") == "other"
    assert metrics.queue_label("default") == "default"


def test_the_app_wires_the_registry_into_type_labels_at_start_up(monkeypatch):
    """metrics does not import the registry: JobsConfig.ready() hands it ``registry.find``."""
    assert metrics._find_type is registry.find
    assert metrics.type_label("test.ok") == "test.ok"

    monkeypatch.setattr(metrics, "_find_type", None)  # before start-up: labels as given
    assert metrics.type_label("no.such.type") == "no.such.type"
    metrics.set_type_lookup(lambda name: None)
    assert metrics.type_label("test.ok") == "unregistered"
