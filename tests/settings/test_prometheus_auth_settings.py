"""Prometheus credentials and TLS in the configuration: checked at load, one line each."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from daemon.errors import ConfigError
from daemon.settings import Settings, parse_settings
from daemon.settings.sources import PrometheusSourceConfig
from tests.settings.conftest import minimal_config
from tests.support.fake_prometheus import make_tls_files


def with_prom(**fields: Any) -> dict[str, Any]:
    config = minimal_config()
    config["sources"]["prom"].update(fields)
    return config


def test_every_credential_field_loads(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("abc\n")
    tls = make_tls_files(tmp_path)
    settings = parse_settings(
        with_prom(
            url="https://prometheus:9090",
            bearer_token_file=str(token),
            ca_file=str(tls.ca_file),
            requests_per_second=20,
            burst=40,
        ),
        "test",
    )
    source = settings.sources["prom"]
    assert isinstance(source, PrometheusSourceConfig)
    assert source.bearer_token_file == token and source.ca_file == tls.ca_file
    assert (source.requests_per_second, source.burst) == (20.0, 40)
    assert source.insecure_skip_verify is False


def test_defaults_send_no_credentials_and_verify_tls() -> None:
    source = parse_settings(minimal_config(), "test").sources["prom"]
    assert isinstance(source, PrometheusSourceConfig)
    assert source.bearer_token_file is None and source.basic_auth is None
    assert source.ca_file is None and source.insecure_skip_verify is False


def _bad_cases(tmp_path: Path) -> list[tuple[dict[str, Any], str, str]]:
    token = tmp_path / "token"
    token.write_text("abc")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    basic = {"username": "u", "password": "p"}
    return [
        (
            with_prom(bearer_token_file=str(token), basic_auth=basic),
            "sources.prom.basic_auth",
            "either bearer_token_file or basic_auth",
        ),
        (
            with_prom(bearer_token_file=str(tmp_path / "missing")),
            "sources.prom.bearer_token_file",
            "No such file",
        ),
        (with_prom(bearer_token_file=str(empty)), "sources.prom.bearer_token_file", "empty"),
        (
            with_prom(basic_auth={"username": "u"}),
            "sources.prom.basic_auth",
            "exactly one of password_file, password_env, password (got none)",
        ),
        (
            with_prom(basic_auth={"username": "u", "password": "p", "password_env": "X"}),
            "sources.prom.basic_auth",
            "got password_env, password",
        ),
        (
            with_prom(basic_auth={"username": "u", "password_file": str(tmp_path / "nope")}),
            "sources.prom.basic_auth.password_file",
            "cannot read",
        ),
        (with_prom(ca_file=str(not_pem)), "sources.prom.ca_file", "not a PEM CA bundle"),
        (with_prom(ca_file=str(tmp_path / "nope.pem")), "sources.prom.ca_file", "no such file"),
        (
            with_prom(ca_file=str(token), insecure_skip_verify=True),
            "sources.prom.insecure_skip_verify",
            "must be false when ca_file is set",
        ),
        (
            with_prom(url="http://u:p@prometheus:9090", basic_auth=basic),
            "sources.prom.url",
            "use one",
        ),
        (
            with_prom(headers={"Authorization": "Bearer x"}, bearer_token_file=str(token)),
            "sources.prom.headers",
            "use one",
        ),
        (with_prom(requests_per_second=0), "sources.prom.requests_per_second", "> 0"),
        (with_prom(burst=0), "sources.prom.burst", ">= 1"),
    ]


def test_each_bad_credential_setting_names_its_path(tmp_path: Path) -> None:
    for config, path, reason in _bad_cases(tmp_path):
        with pytest.raises(ConfigError) as raised:
            parse_settings(config, "test")
        assert raised.value.path == path, (path, str(raised.value))
        assert reason in raised.value.reason, (reason, str(raised.value))


def test_an_invalid_url_is_quoted_without_its_password() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_settings(with_prom(url="prometheus://admin:hunter22@prom:9090"), "test")
    assert raised.value.path == "sources.prom.url"
    assert "admin:***@prom" in str(raised.value) and "hunter22" not in str(raised.value)


def test_a_wrong_type_is_quoted_without_its_secret() -> None:
    # pydantic quotes the rejected value ("got ..."); the loader redacts it.
    with pytest.raises(ConfigError) as raised:
        parse_settings(with_prom(timeout="http://admin:hunter22@prom:9090"), "test")
    assert "hunter22" not in str(raised.value)


def test_the_schema_documents_the_credential_fields() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "config-schema"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    schema = json.loads(result.stdout)
    assert schema == json.loads(json.dumps(Settings.model_json_schema()))
    prometheus = schema["$defs"]["PrometheusSourceConfig"]["properties"]
    for field in ("bearer_token_file", "basic_auth", "ca_file", "insecure_skip_verify"):
        assert prometheus[field]["description"], field
    assert "PROMETHEUS_BEARER_TOKEN" in prometheus["bearer_token_file"]["description"]
    basic = schema["$defs"]["BasicAuthConfig"]["properties"]
    assert set(basic) == {"username", "password_file", "password_env", "password"}
