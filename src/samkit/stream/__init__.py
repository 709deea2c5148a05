"""Live tracking: frames that arrive one at a time (cameras, network streams, WebSockets)."""

from .tracker import StreamError, StreamTracker

__all__ = ["StreamError", "StreamTracker"]
