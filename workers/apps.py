from django.apps import AppConfig

from voices import remote as voices_remote


class WorkersConfig(AppConfig):
    """Hands distributed mode's clone and refinement dispatch to voices, which sits below workers.

    An app (no models) so that this runs once in every process that sets Django up: web
    processes, and Celery workers (Celery's Django fixup calls ``django.setup()``).
    """

    name = "workers"
    verbose_name = "Job runners"

    def ready(self) -> None:
        # Here, not at module top: workers.remote imports models, which exist only once the registry is ready.
        from workers import remote

        voices_remote.install(clone_on_worker=remote.clone_on_worker, send_refine=remote.send_refine,
                              worker_draining=remote.worker_draining)
