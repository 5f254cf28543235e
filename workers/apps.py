from django.apps import AppConfig


class WorkersConfig(AppConfig):
    """Hands the mode's backend (workers/backend.py) to voices and tenants, which sit below workers.

    An app (no models) so that this runs once in every process that sets Django up: web
    processes, and Celery workers (Celery's Django fixup calls ``django.setup()``).
    """

    name = "workers"
    verbose_name = "Job runners"

    def ready(self) -> None:
        # Here, not at module top: these import models, which exist only once the registry is ready.
        from tenants import quotas
        from voices import job_backend
        from workers.backend import current

        job_backend.job_backend.install(current)
        quotas.counters.install(lambda: current().quota_counters())
