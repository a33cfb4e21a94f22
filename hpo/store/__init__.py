"""Where studies live: storage URLs and engines, the Optuna compat layer, opening and creating a
study with its stored identity, the study lock, the trial budget, retries, heartbeats, the
recorder of intermediate values, and trials carried over from a parent study."""
