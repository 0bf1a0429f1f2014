"""The built-in `http` task: its client, keep-alive connections, destination policy and errors."""
