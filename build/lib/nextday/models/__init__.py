"""Models: what each one reads (spec), how inputs are scaled, the networks, and their training."""
