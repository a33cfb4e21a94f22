"""Search wisdom: the practice of TRAINING.md that a careful person follows around a search.

`check` babysits a setup before a search, `lr_find` runs the learning-rate range test,
`refine` writes the next, narrower stage of a search (from the edge warnings of
`hpo.report.edges`), and `stages` runs several such stages from one study file; `setup` is
the trainer setup the probes share. Everything here uses Optuna's public API only.
"""
