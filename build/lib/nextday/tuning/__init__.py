"""Hyperparameter search: the space as data, the study and its storage, per-epoch pruning."""
