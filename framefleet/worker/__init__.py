"""The worker: the Celery task that claims a job and the pipeline that runs it."""
