"""How a run is made and kept: training, evaluation, traces, checkpoints and the run store."""
