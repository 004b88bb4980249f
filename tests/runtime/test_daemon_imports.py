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


def test_a_daemon_without_aws_targets_does_not_load_the_aws_sdk() -> None:
    # Everything a Kubernetes/Prometheus daemon imports to start, read its configuration and
    # build its targets; the AWS SDK (7 MB resident) comes with the first AWS target only.
    loaded = loaded_after(
        "import daemon.commands.run, daemon.runtime.app, daemon.runtime.supervisor, "
        "daemon.runtime.janitor, daemon.kinds.registry, daemon.sources.prometheus, "
        "daemon.actuators.kubernetes\n"
        "from daemon.settings.loader import load_settings\n"
        "load_settings('config/kubernetes.yaml')"
    )
    assert "kubernetes_asyncio" in loaded
    assert loaded.isdisjoint(AWS_SDK), sorted(loaded & set(AWS_SDK))
    # ... and a CloudWatch source does bring it.
    assert set(AWS_SDK) <= loaded_after("import daemon.sources.cloudwatch")
