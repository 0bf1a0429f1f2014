"""greenpool service: the HTTP layer (gunicorn worker, falcon app), the job engine and tasks."""
