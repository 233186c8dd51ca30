"""Runtimes: Flower's simulation engine on Ray, the compute-floor pool, and a deployment
(SuperLink + SuperNodes) on this machine with its credentials."""
