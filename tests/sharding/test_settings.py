"""The sharding section: off by default, timings ordered, exclusive with leader election."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from daemon.errors import ConfigError
from daemon.settings import parse_settings
from tests.runtime.test_app import simulator_config


def settings_with(tmp_path: Path, **sections: Any) -> Any:
    return parse_settings(simulator_config(tmp_path) | sections, "test.yaml")


def test_off_by_default(tmp_path: Path) -> None:
    settings = settings_with(tmp_path)
    assert settings.sharding.enabled is False
    assert settings.sharding.backend == "kubernetes"


def test_renew_deadline_must_be_inside_the_lease(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        settings_with(tmp_path, sharding={"lease_duration": "10s", "renew_deadline": "10s"})
    assert raised.value.path == "sharding.renew_deadline"


def test_not_with_leader_election(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        settings_with(tmp_path, sharding={"enabled": True}, leader_election={"enabled": True})
    assert raised.value.path == "sharding.enabled"
    assert "leader_election" in raised.value.reason


def test_a_bad_etcd_endpoint_names_its_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        settings_with(tmp_path, sharding={"backend": "etcd", "etcd": {"endpoint": "nohost"}})
    assert raised.value.path == "sharding.etcd.endpoint"
