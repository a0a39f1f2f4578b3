"""Audio on Ray: the feature store (``store``), extraction into it (``features``), what a training job is told (``settings``), training and evaluation (``train``), tuning (``tune``)."""
