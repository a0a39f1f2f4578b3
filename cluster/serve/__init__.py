"""``cadence serve``: the counting service (``service``), its HTTP app (``app``), SQLite store (``store``), metrics and page."""
