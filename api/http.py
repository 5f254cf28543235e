"""The REST boundary: every endpoint answers JSON, errors included."""
from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase

from api import metrics
from core.errors import ApiError, NotReady

log = logging.getLogger(__name__)

JSON_PARAMS = {"ensure_ascii": False}


def json_response(payload: Any, status: int = 200) -> JsonResponse:
    return JsonResponse(payload, status=status, safe=False, json_dumps_params=JSON_PARAMS)


def error_response(message: str, status: int) -> JsonResponse:
    return json_response({"error": True, "message": message}, status=status)


def json_endpoint(*methods: str) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[HttpResponseBase]]]:
    """Wrap an async view: method check, domain errors to JSON, payload to JsonResponse."""

    def decorate(view: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[HttpResponseBase]]:
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method not in methods:
                metrics.count_http_error("MethodNotAllowed", 405)
                response = error_response(f"method {request.method} not allowed; use {', '.join(methods)}", 405)
                response["Allow"] = ", ".join(methods)
                return response
            try:
                result = await view(request, *args, **kwargs)
            except RequestDataTooBig:
                metrics.count_http_error("RequestDataTooBig", 413)
                return error_response("request body is too large", 413)
            except ApiError as exc:
                metrics.count_error("http", exc)
                if exc.status >= 500 and not isinstance(exc, NotReady):
                    log.error("%s %s failed: %s", request.method, request.path, exc.message)
                response = error_response(exc.message, exc.status)
                if isinstance(exc, NotReady):  # expected while starting: no ERROR line from Django either
                    response["Retry-After"] = str(exc.retry_after)
                    response._has_been_logged = True  # type: ignore[attr-defined]
                return response
            except Exception as exc:
                metrics.count_error("http", exc)
                log.exception("%s %s crashed", request.method, request.path)
                return error_response("internal server error", 500)
            if isinstance(result, HttpResponseBase):  # streamed responses (archives) included
                return result
            return json_response(result)

        wrapper.csrf_exempt = True  # type: ignore[attr-defined]
        return wrapper

    return decorate


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(f"no such endpoint: {request.path}", 404)


def server_error(request: HttpRequest) -> HttpResponse:
    return error_response("internal server error", 500)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response("bad request", 400)
