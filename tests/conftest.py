"""Shared pytest wiring: the test bed's fixtures come from its own plugin modules."""

pytest_plugins = ["testbed.fixtures_mirrors", "testbed.fixtures_hosts", "testbed.fixtures_standin"]
