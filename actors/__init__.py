"""Ray actors hosting the components of :mod:`cadence.pipelines` as streaming stages (``stages``),
the Arrow batches they pass (``schemas``), and the driver's bounded queues and pose pool (``queues``)."""
