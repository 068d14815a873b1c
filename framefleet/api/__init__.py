"""The HTTP API: FastAPI app, dependencies, problem+json errors and thin routers over the job service."""
