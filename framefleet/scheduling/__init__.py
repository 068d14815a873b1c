"""Scheduling that holds under failure: the beat's maintenance tasks and the pure rules they apply."""
