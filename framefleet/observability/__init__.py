"""Metrics of every FrameFleet process (worker, beat) and the energy and cost of each job."""
