"""The ecs-service, spot-fleet and lambda-provisioned-concurrency kinds in configuration: their
fields, the errors naming the YAML path, and the JSON Schema."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.errors import ConfigError
from daemon.kinds.ecs_service import EcsServiceTarget
from daemon.kinds.lambda_concurrency import LambdaConcurrencyTarget
from daemon.kinds.spot_fleet import SpotFleetTarget
from daemon.settings import Settings, parse_settings

COMMON = {
    "source": "cw",
    "query": {"namespace": "AWS/X", "metric_name": "Y", "statistic": "Sum"},
    "unit_capacity": 10,
    "lead_time": "3m",
    "max_units": 20,
}


def settings(target: dict[str, Any]) -> Settings:
    data = {
        "aws": {"region": "us-east-1"},
        "sources": {"cw": {"type": "cloudwatch"}},
        "targets": [{"name": "t"} | COMMON | target],
    }
    return parse_settings(data, "test.yaml")


def test_each_kind_parses_to_its_model() -> None:
    ecs = settings({"kind": "ecs-service", "cluster": "prod", "service": "web"}).targets[0]
    assert isinstance(ecs, EcsServiceTarget) and (ecs.cluster, ecs.service) == ("prod", "web")
    fleet = settings(
        {"kind": "spot-fleet", "spot_fleet_request_id": "sfr-73fbd2ce-aa30-494c-8788-1cee4a1b2c3d"}
    ).targets[0]
    assert isinstance(fleet, SpotFleetTarget)
    function = settings(
        {"kind": "lambda-provisioned-concurrency", "function_name": "f", "qualifier": "7"}
    ).targets[0]
    assert isinstance(function, LambdaConcurrencyTarget)
    assert function.allocation_timeout == 900.0


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            {
                "kind": "lambda-provisioned-concurrency",
                "function_name": "f",
                "qualifier": "$LATEST",
            },
            r"targets\[0\]\.qualifier: \$LATEST cannot have provisioned concurrency",
        ),
        (
            {"kind": "lambda-provisioned-concurrency", "function_name": "f"},
            r"targets\[0\]\.qualifier",
        ),
        ({"kind": "spot-fleet", "spot_fleet_request_id": "fleet-1"}, r"spot_fleet_request_id"),
        ({"kind": "ecs-service", "cluster": "prod"}, r"targets\[0\]\.service"),
        (
            {"kind": "ecs-service", "cluster": "p", "service": "w", "act_via": "asg-floor"},
            r"targets\[0\]\.act_via: not available for ecs-service",
        ),
    ],
)
def test_bad_fields_name_their_path(target: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(target)


def test_the_schema_has_the_three_kinds() -> None:
    schema = str(Settings.model_json_schema())
    for kind in ("ecs-service", "spot-fleet", "lambda-provisioned-concurrency"):
        assert f"'{kind}'" in schema
    assert "allocation_timeout" in schema and "spot_fleet_request_id" in schema
