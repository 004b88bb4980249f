"""Typed, immutable configuration, validated once when the YAML file is loaded.

``load_settings(path)`` returns a frozen ``Settings``; every problem is one ``ConfigError``
naming the dotted YAML path (``targets[1].max_units``) and the reason.
"""

from __future__ import annotations

from daemon.settings.general import (
    AuditConfig,
    AwsConfig,
    KubernetesConfig,
    LeaderElectionConfig,
    LogFormat,
    TelemetryConfig,
    TrainingConfig,
)
from daemon.settings.loader import ConfigFileError, load_settings, parse_settings
from daemon.settings.nodes import NodeGroupLink, Resources
from daemon.settings.quantities import parse_bytes, parse_cpu
from daemon.settings.queries import CloudWatchQuery
from daemon.settings.root import Settings
from daemon.settings.schedules import Override, ScheduleWindow
from daemon.settings.sources import (
    CloudWatchSourceConfig,
    GenerateConfig,
    PrometheusSourceConfig,
    SimulatorSourceConfig,
    SourceConfig,
)
from daemon.settings.targets import (
    AboveMaxConfig,
    ActVia,
    AsgTarget,
    EksNodeGroupTarget,
    KubernetesWorkloadTarget,
    Mode,
    ScaleLimit,
    SimulatorTarget,
    TargetConfig,
    TargetKind,
)

__all__ = [
    "AboveMaxConfig",
    "ActVia",
    "AsgTarget",
    "AuditConfig",
    "AwsConfig",
    "CloudWatchQuery",
    "CloudWatchSourceConfig",
    "ConfigFileError",
    "EksNodeGroupTarget",
    "GenerateConfig",
    "KubernetesConfig",
    "KubernetesWorkloadTarget",
    "LeaderElectionConfig",
    "LogFormat",
    "Mode",
    "NodeGroupLink",
    "Override",
    "PrometheusSourceConfig",
    "Resources",
    "ScaleLimit",
    "ScheduleWindow",
    "Settings",
    "SimulatorSourceConfig",
    "SimulatorTarget",
    "SourceConfig",
    "TargetConfig",
    "TargetKind",
    "TelemetryConfig",
    "TrainingConfig",
    "load_settings",
    "parse_bytes",
    "parse_cpu",
    "parse_settings",
]
