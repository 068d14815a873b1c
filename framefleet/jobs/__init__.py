"""Jobs: the state machine (every state change goes through it) and the job service used by the API."""
