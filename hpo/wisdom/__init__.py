"""Search wisdom: the practice of TRAINING.md that a careful person follows around a search.

`check` babysits a setup before a search, `lr_find` runs the learning-rate range test,
`edges` flags best values at the edge of their range, `refine` writes the next, narrower
stage of a search, and `stages` runs several such stages from one study file. Everything
here uses Optuna's public API only.
"""
