"""Ray actors that host the components of :mod:`pipelines` as streaming stages."""
