"""Privacy: pseudonymous user ids, erasure of one person, and retention of events."""
