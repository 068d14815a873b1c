"""Routers: each parses and authorizes a request, then calls the service."""
