"""HTTP server (FastAPI): JSON API over the image predictor with embedding and mask caches."""

from .app import create_app
from .config import ServerConfig

__all__ = ["ServerConfig", "create_app"]
