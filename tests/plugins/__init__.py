"""Plugin-task modules shared by the suites that start real servers (GREENPOOL_PLUGINS=tests.plugins.tasks)."""
