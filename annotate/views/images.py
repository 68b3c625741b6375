"""Item images: served only through a view that asks `access.image_visible_to`, never as public media.

Images are named by the SHA-256 of their bytes, so a URL never changes meaning and the browser may
keep a private copy for an hour. Clients of the REST API fetch the same URL with their token.
"""

from __future__ import annotations

import mimetypes

from django.http import FileResponse, HttpRequest
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_safe
from PIL import Image as PILImage
from rest_framework.exceptions import AuthenticationFailed

from annotate import access
from annotate.api.authentication import TokenAuthentication
from annotate.exceptions import NotFoundError
from annotate.models import Image
from annotate.views.errors import renders_errors

# Images never change under their name; an hour keeps a labeling session from refetching them.
CACHE_SECONDS = 3600
FALLBACK_CONTENT_TYPE = "application/octet-stream"


def image_url(image: Image) -> str:
    """Return the URL that serves this image to members of a campaign that shows it."""
    return reverse("image-file", kwargs={"sha256": image.sha256})


def content_type_of(image: Image) -> str:
    """Return the MIME type of the stored image, from the format Pillow read at import."""
    by_format = PILImage.MIME.get(image.format.upper())
    return by_format or mimetypes.guess_type(image.file.name)[0] or FALLBACK_CONTENT_TYPE


def _requesting_user(request: HttpRequest):
    """Return the session user, or the owner of an `Authorization: Token …` header (API clients)."""
    if request.user.is_authenticated:
        return request.user
    try:
        authenticated = TokenAuthentication().authenticate(request)
    except AuthenticationFailed:
        authenticated = None
    return authenticated[0] if authenticated else request.user


@require_safe
@renders_errors
def image_file(request: HttpRequest, sha256: str) -> FileResponse:
    """Stream an item image to a member of a campaign that shows it; 404 to everyone else."""
    image = Image.objects.filter(sha256=sha256).first()
    # The same answer whether the image is missing or belongs to other campaigns: ids reveal nothing.
    if image is None or not access.image_visible_to(_requesting_user(request), sha256):
        raise NotFoundError(f"No image {sha256[:12]}….")
    response = FileResponse(image.file.open("rb"), content_type=content_type_of(image))
    patch_cache_control(response, private=True, max_age=CACHE_SECONDS)
    return response
