"""Fixtures shared by the suites that run on the mini HPC center (integration, faults)."""

pytest_plugins = ["tests.harness.fixtures"]
