"""Workflows: presets, templates, batch submission, dependencies and schedules."""
