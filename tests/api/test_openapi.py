from __future__ import annotations

import re

from django.urls import URLPattern

from api.openapi import SCHEMA
from ttsplatform.urls import urlpatterns


def test_every_rest_route_is_documented() -> None:
    # Django's "<path:prompt_id>" is OpenAPI's "{prompt_id}"
    routes = {re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", "/" + str(p.pattern))
              for p in urlpatterns if isinstance(p, URLPattern)}
    assert routes == set(SCHEMA["paths"])


def test_every_operation_documents_the_error_shape() -> None:
    for path, item in SCHEMA["paths"].items():
        for method, op in item.items():
            if path == "/openapi.json":
                continue
            errors = [code for code in op["responses"] if code.startswith(("4", "5"))]
            assert errors, (path, method)
