"""Targets sharded across replicas: a consistent-hash ring over live members, each member's
membership kept on Kubernetes Leases or etcd, and a per-target write gate (docs/sharding.md)."""
