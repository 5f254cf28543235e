from django.apps import AppConfig


class ApiConfig(AppConfig):
    """An app only so that Django's admin autodiscovery imports ``api.admin`` (no models)."""

    name = "api"
    verbose_name = "Entry points"
