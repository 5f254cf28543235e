"""The operators' admin panel: the site and the model admins registered on it.

Django's autodiscovery imports this package (``api`` is an installed app); importing the
modules below registers the voice and tenant admins on :data:`api.admin.site.site`.
"""
from api.admin import batches, site, tenants, voices  # noqa: F401
