"""Ground floor shared by every part: typed settings and the Kafka client factory.

Imports nothing from ``collector``, ``processors`` or ``hmtel``.
"""
from hmconfig.settings import Settings, SettingsError, load_settings

__all__ = ["Settings", "SettingsError", "load_settings"]
