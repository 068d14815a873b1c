"""The domain: job spec, states, failure classes. Pure code, no I/O."""
