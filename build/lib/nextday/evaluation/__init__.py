"""One evaluation for every step: the same metrics, names and baselines everywhere."""
