"""cadence: temporal machine learning on streams, in the style of Apple's Create ML Components,
scaled out with Ray.

``from cadence import ...`` gives every component, record and error (``cadence.__all__``); none of
them imports Ray.  The layers are subpackages:

- ``cadence.pipelines``: the components, plain Python (what this package re-exports);
- ``cadence.actors``: Ray actors hosting those components as streaming stages;
- ``cadence.cluster``: jobs on Ray (multi-feed counting, feature extraction, training) and the
  ``cadence`` command line (also ``python -m cadence``).
"""

from importlib.metadata import PackageNotFoundError, version

from . import pipelines as _pipelines
from .pipelines import *  # noqa: F403  (the public API, listed in pipelines.__all__)

__all__ = list(_pipelines.__all__)

try:
    __version__ = version("cadence")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"
