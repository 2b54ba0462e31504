"""What is computed from runs: metrics, attacks, tables, the paper's claims, exact targets,
plots."""
