"""Signed webhooks: tenant endpoints, per-job notify URLs, durable ordered deliveries (docs/workflows.md)."""
