"""What the notebooks share: the session (provenance, runs, glue, claims) and the runner."""
