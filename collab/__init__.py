"""collab: a real-time collaborative computing server."""

__version__ = "0.1.0"
