"""Joining Ray (``connect``) and stopping a local Ray that outlives its process (``reaper``)."""
