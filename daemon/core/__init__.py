"""The pure core: plain synchronous functions over immutable values, ``now`` passed in.

Nothing here does I/O or imports an SDK (an import-linter contract checks it). This is what both
the daemon and ``elasticd backtest`` run, so a replay shows what the daemon would have done.
"""
