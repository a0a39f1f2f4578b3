"""Jobs on Ray and the ``cadence`` command line, one sub-package per capability:
``counting`` (the repetition-counting job), ``serve`` (the counting service), ``audio`` (features,
training, tuning), ``runtime`` (joining Ray), ``bench`` (benchmarks) and the parser (``cli``)."""
