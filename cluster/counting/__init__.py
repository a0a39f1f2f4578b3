"""The repetition-counting job: the Ray pipeline's driver (``pipeline``) and ``cadence count``'s runners (``count``)."""
