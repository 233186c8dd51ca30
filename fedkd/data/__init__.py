"""Data: embedded data sets and their splits, flwr-datasets partitions, a device's own data file, the on-disk cache."""
