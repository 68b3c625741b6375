"""Refuse a request body that is too large before it is read whole (issue 7, item 3).

Django reads a body lazily, and only as far as its Content-Length: the first to touch `request.POST`
(CsrfViewMiddleware, for any POST) streams a multipart body to a temporary file, however large. So the size
is judged here, before that. An import package may be up to REWARDLAB_MAX_UPLOAD_BYTES (plus room for the
multipart envelope); every other address takes no more than DATA_UPLOAD_MAX_MEMORY_SIZE, since no other form
or endpoint takes a file.

- A Content-Length over the limit: 413, and not a byte of the body is read.
- A body longer than its Content-Length: never read past that length (Django's LimitedStream).
- A body without a length (`Transfer-Encoding: chunked`), from a server that ends the stream at the body's
  end (gunicorn sets `wsgi.input_terminated`): read into a temporary file up to one byte past the limit,
  then refused with 413, or handed on with its now known length. From other servers Django reads none of
  it, as before.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable

from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.urls import Resolver404, resolve
from django.utils.cache import patch_vary_headers
from django_htmx.middleware import HtmxDetails

from annotate.exceptions import ApplicationError
from annotate.views.errors import error_response

# The addresses that take an import package (views/urls.py and api/urls.py); a new upload form joins here.
UPLOAD_URL_NAMES = frozenset({"import-page", "api-imports"})
# Room for the multipart boundaries, part headers and the CSRF field around the file itself.
MULTIPART_ENVELOPE_BYTES = 64 * 1024
API_PREFIX = "/api/"
# How much of a chunked body is read at a time while it is spooled.
SPOOL_CHUNK_BYTES = 64 * 1024


class RequestTooLargeError(ApplicationError):
    """The request body is larger than this address accepts; it was not read whole."""

    status_code = 413


def takes_uploads(request: HttpRequest) -> bool:
    """Tell whether the request is for an address that takes an import package."""
    try:
        return resolve(request.path_info).url_name in UPLOAD_URL_NAMES
    except Resolver404:
        return False


def body_limit(request: HttpRequest) -> int:
    """Return how many body bytes this address accepts."""
    return upload_limit() if takes_uploads(request) else settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def upload_limit() -> int:
    """The body an import address accepts: the largest package and its multipart envelope."""
    return settings.REWARDLAB_MAX_UPLOAD_BYTES + MULTIPART_ENVELOPE_BYTES


def declared_length(request: HttpRequest) -> int | None:
    """Return the Content-Length the client sent, or None when it sent none (or not a number)."""
    try:
        return int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


def is_chunked(request: HttpRequest) -> bool:
    """Tell whether the body comes without a length, ended by the server (gunicorn de-chunks it so)."""
    chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
    return chunked and bool(request.META.get("wsgi.input_terminated"))


def too_large(request: HttpRequest, length: int, limit: int, *, known: bool) -> RequestTooLargeError:
    """Return the refusal, in the terms of the address: a package's limit, or that it takes no file."""
    size = f"{length} bytes" if known else f"over {limit} bytes (sent without a length; read that far)"
    if takes_uploads(request):
        package_limit = settings.REWARDLAB_MAX_UPLOAD_BYTES
        return RequestTooLargeError(
            f"The upload is {size}; the largest package accepted is {package_limit} bytes. Nothing was imported."
        )
    return RequestTooLargeError(
        f"The request body is {size}; this address takes no file and at most {limit} bytes. Nothing was done."
    )


def spool_chunked_body(request: HttpRequest, limit: int) -> bool:
    """Read a chunked body into a temporary file, at most `limit + 1` bytes; False when it is longer.

    Within the limit, the request reads the file instead, with its length set, as if it had been sent so.
    """
    stream = request.META["wsgi.input"]
    spool = tempfile.SpooledTemporaryFile(max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE)
    size = 0
    while size <= limit and (chunk := stream.read(min(SPOOL_CHUNK_BYTES, limit + 1 - size))):
        spool.write(chunk)
        size += len(chunk)
    if size > limit:
        spool.close()
        return False
    spool.seek(0)
    request.META["CONTENT_LENGTH"] = str(size)
    # WSGIRequest reads its body from `_stream`, made from CONTENT_LENGTH (0 here) when the request was built.
    request._stream = LimitedStream(spool, size)
    request._spooled_body = spool  # closed with the request (RequestSizeLimitMiddleware)
    return True


class RequestSizeLimitMiddleware:
    """Answer 413 before a too-large body is read whole; the API gets JSON, pages the error partial."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        length = declared_length(request)
        chunked = length is None and is_chunked(request)
        # Most requests carry a small body or none: only a body that may be over a limit costs a URL lookup.
        if chunked or (length is not None and length > min(settings.DATA_UPLOAD_MAX_MEMORY_SIZE, upload_limit())):
            limit = body_limit(request)
            if chunked and not spool_chunked_body(request, limit):
                return self.refuse(request, too_large(request, limit + 1, limit, known=False))
            if not chunked and length > limit:
                return self.refuse(request, too_large(request, length, limit, known=True))
        try:
            return self.get_response(request)
        finally:
            spooled = getattr(request, "_spooled_body", None)
            if spooled is not None:
                spooled.close()

    def refuse(self, request: HttpRequest, exc: ApplicationError) -> HttpResponse:
        """Render the refusal: JSON under /api/, the error page (or its htmx partial) elsewhere.

        What is left of the body on the connection is the WSGI server's to discard (a WSGI application may
        not send hop-by-hop headers such as `Connection: close`).
        """
        if request.path_info.startswith(API_PREFIX):
            return JsonResponse({"detail": exc.message}, status=exc.status_code)
        # HtmxMiddleware runs later; the error page needs to know whether htmx asked.
        request.htmx = HtmxDetails(request)
        response = error_response(request, exc)
        response.render()
        patch_vary_headers(response, ("HX-Request",))
        return response
