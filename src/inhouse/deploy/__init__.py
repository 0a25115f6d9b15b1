"""Running inhouse on a machine: the systemd service (``systemd.py``)."""
