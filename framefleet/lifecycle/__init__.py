"""Data lifecycle: the stored-object ledger, retention and the result cache."""
