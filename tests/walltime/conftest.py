"""The walltime suite drives Lab with the browser suite's Chromium."""

from tests.browser.conftest import browser  # noqa: F401 - a fixture
