"""ServerApp side: the round loop, evaluation and results."""
