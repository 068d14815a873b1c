"""Tenancy: tenants, keys and their roles, the permission table every route declares, the audit log and
secret encryption."""
