from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Tenants, keys, quotas and usage"
    default_auto_field = "django.db.models.BigAutoField"
