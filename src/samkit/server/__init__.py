"""HTTP server (FastAPI): JSON API over the image predictor with embedding and mask caches."""

from .app import create_app
from .config import ServerConfig, Settings

__all__ = ["ServerConfig", "Settings", "create_app"]
