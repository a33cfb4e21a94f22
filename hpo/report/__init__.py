"""What a study holds, for a person or a program: summaries, exports, edge warnings, the HTML
report, the dashboard, the study note, the catalog of studies in a storage. One concept a
module; nothing is imported here, so `hpo --help` stays free of Optuna."""
