"""Faults: the injected fault plan (drops, stragglers, crashes), Byzantine uploads and the
robust aggregators that withstand them."""
