"""elasticd: a predictive autoscaling daemon."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("elasticd")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"
