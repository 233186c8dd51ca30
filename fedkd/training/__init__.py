"""Training: the loops that clients, the server model and scripts share (digest, revisit,
per-class distillation, evaluation) and the server model's early-stopped distillation."""
