"""Learning: student architectures, KD losses (the T² factor) and export of trained
students for edge devices."""
