"""The server layer: the gunicorn worker class, its HTTP/1.1 fast path, and running gunicorn in-process."""
