"""leak-watcher: find French health-insurance data extracts where leaks surface."""

__version__ = "0.1.0"
