"""The web console, served by the API under /console (see docs/console.md)."""
