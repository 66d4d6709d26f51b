"""sdcontainer: containers as plain systemd services, with no daemon."""

__version__ = "0.1.0"
