"""The long-running daemon: per-target reconcilers and model trainers under one composition root.

``app`` is the only module that names concrete sources and actuators; ``reconciler`` and
``trainer`` see them only through their Protocols, so tests drive them with the simulator pair
or a fake Kubernetes API.
"""
