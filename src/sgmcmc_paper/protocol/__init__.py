"""What a run is: its config and the profiles, the paper's published facts, tuned hyper-parameters,
the paper's CNN, and which runs each notebook needs."""
