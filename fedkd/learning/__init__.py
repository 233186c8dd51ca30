"""Learning: student architectures, KD losses (the T² factor), the training loops that clients, the
server model and scripts share, and export of trained students for edge devices."""
