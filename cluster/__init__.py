"""Cluster-level jobs (counting many feeds, corpus preprocessing, training) and the ``cadence`` CLI."""
