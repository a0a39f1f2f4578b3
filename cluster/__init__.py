"""Jobs on Ray and the ``cadence`` command line: the counting pipeline's driver (``pipeline``), the
``cadence count`` runners (``count``), joining Ray (``connect``), the feature store and extraction
(``features``), training (``train``), benchmarks (``benchmarks``) and the parser (``cli``)."""
