"""The HTTP API layer: the falcon app, its resources, auth, problem documents, streams and metrics."""
