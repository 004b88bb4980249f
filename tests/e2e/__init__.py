"""End-to-end tests: the daemon as a subprocess against real servers."""
