"""Process configuration shared by the API, the worker and the command line."""

from config.settings import DEV_JWT_SECRET, Settings, get_settings

__all__ = ["DEV_JWT_SECRET", "Settings", "get_settings"]
