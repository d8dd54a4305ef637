"""`modelci tune`: hyperparameter search with Optuna."""
