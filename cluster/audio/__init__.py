"""Audio on Ray: the feature store and extraction (``features``), training and evaluation (``train``), tuning (``tune``)."""
