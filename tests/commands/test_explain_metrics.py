"""`elasticd explain` on a target with several metrics names them and its companions."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.commands.test_explain import explain

CONFIG = Path(__file__).resolve().parents[2] / "config" / "several-metrics.yaml"


def test_explain_names_the_metrics_and_the_companion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = yaml.safe_load(CONFIG.read_text())
    config["state_dir"] = str(tmp_path / "state")
    path = tmp_path / "elasticd.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    code, out, _ = explain(capsys, path, "-t", "web")
    assert code == 0
    assert "metrics: cpu (this target's own), rps (target web.rps)" in out
    code, out, _ = explain(capsys, path, "-t", "web.rps")
    assert code == 0
    assert out.startswith("target web.rps (deployment, forecast-only)")
    assert "metric of target web" in out
