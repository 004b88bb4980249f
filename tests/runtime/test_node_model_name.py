"""The node-lead model of a pod target never shares a name with a target: config/kubernetes.yaml
names its node target ``web-nodes``, which the old ``-nodes`` suffix made the very file of pod
target ``web``'s node-lead model (the two overwrote each other, with different lead times)."""

from __future__ import annotations

import re
from pathlib import Path

from daemon.runtime.layers import NODE_MODEL_SUFFIX
from daemon.settings import load_settings
from daemon.settings.target_base import NAME_PATTERN

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "kubernetes.yaml"


def test_no_target_name_can_be_a_node_model_name() -> None:
    settings = load_settings(EXAMPLE)
    names = {target.name for target in settings.targets}
    for target in settings.targets:
        model = target.name + NODE_MODEL_SUFFIX
        assert model not in names
        assert re.fullmatch(NAME_PATTERN, model) is None, model
