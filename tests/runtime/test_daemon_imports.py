"""What ``elasticd run`` loads at start is part of its memory budget (issue 10: 1,000 targets in
400 MB, of which imports are about half): plotting and dataframe libraries must stay out of it.

Each check runs in a fresh interpreter, as the daemon starts: this process has long since
imported whatever other tests needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# Libraries the daemon never needs to decide: matplotlib only draws the backtest's plot (the
# optional [plot] extra), pandas nothing at all. Either would add tens of MB to every daemon.
NOT_FOR_THE_DAEMON = ("matplotlib", "pandas", "PIL")


def loaded_after(statement: str) -> set[str]:
    """Top-level packages in ``sys.modules`` after running ``statement`` in a new process."""
    code = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return {name.split(".")[0] for name in json.loads(result.stdout.splitlines()[-1])}


def test_the_daemon_loads_no_plotting_or_dataframe_library() -> None:
    # daemon.commands.run is what `elasticd run` imports (it imports daemon.runtime.app).
    loaded = loaded_after("import daemon.commands.run, daemon.runtime.app")

    assert "daemon" in loaded and "sklearn" in loaded  # it did import the daemon and its model
    assert loaded.isdisjoint(NOT_FOR_THE_DAEMON), sorted(loaded & set(NOT_FOR_THE_DAEMON))


AWS_SDK = ("aioboto3", "aiobotocore", "boto3", "botocore")

KUBERNETES_ONLY = """
interval: 15s
state_dir: {state}
kubernetes: {{kubeconfig: {kubeconfig}, in_cluster: false}}
sources: {{prom: {{type: prometheus, url: "http://127.0.0.1:9"}}}}
targets:
  - {{name: web, kind: deployment, namespace: default, workload: web, source: prom,
      query: sum(demand), unit_capacity: 10, lead_time: 5m, min_units: 1, max_units: 50}}
"""

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:9"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u, namespace: default}}]
current-context: c
"""


def test_a_daemon_without_aws_targets_does_not_load_the_aws_sdk(tmp_path: Path) -> None:
    # One real pass of a Kubernetes/Prometheus daemon (`elasticd once`: it builds every
    # target, its source and actuators, as `run` does) against endpoints that refuse: the
    # AWS SDK (7 MB resident) must come with an AWS target only.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG, encoding="utf-8")
    config = tmp_path / "elasticd.yaml"
    config.write_text(
        KUBERNETES_ONLY.format(state=tmp_path / "state", kubeconfig=kubeconfig), encoding="utf-8"
    )
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "daemon", "once", "--config", str(config)],
        capture_output=True,
        text=True,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
        timeout=120,
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    # It got as far as building the target's actuators (the HPA check) and trying them.
    assert "daemon.actuators.floors" in imported, result.stderr[-2000:]
    assert "web" in result.stdout
    assert imported.isdisjoint(AWS_SDK), sorted(imported & set(AWS_SDK))
    # ... and a CloudWatch source does bring it.
    assert set(AWS_SDK) <= loaded_after("import daemon.sources.cloudwatch")
