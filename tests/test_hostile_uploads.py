"""Oversized uploads are refused before they are read whole (issue 7, item 3; annotate/uploads.py).

The request bodies here are streams that count what the server reads from them and fail the test if it
reads past what it may. Requests go through Django's whole handler and middleware (the test client with its
`wsgi.input` replaced), and once through a real HTTP server with a body that is never sent at all.
"""

from __future__ import annotations

import io
import socket
from urllib.parse import urlsplit

import pytest
from django.conf import settings as django_settings
from django.test import Client
from rest_framework.authtoken.models import Token

from annotate.models import Campaign, ImportJob
from annotate.uploads import MULTIPART_ENVELOPE_BYTES

LIMIT = 10_000  # REWARDLAB_MAX_UPLOAD_BYTES for these tests
BOUNDARY = "hostile-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


class CountingStream(io.RawIOBase):
    """A request body of `size` bytes that records how much of it is read, and fails past `may_read`."""

    def __init__(self, size: int, *, may_read: int, prefix: bytes = b"") -> None:
        self.size = size
        self.may_read = may_read
        self.prefix = prefix
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.size - self.read_bytes)
        if self.read_bytes + n > self.may_read:
            raise AssertionError(f"the server read past byte {self.may_read} of a {self.size}-byte body")
        start = self.read_bytes
        chunk = bytes(self.prefix[start : start + n]).ljust(n, b"x")
        buffer[:n] = chunk
        self.read_bytes += n
        return n


def multipart_file(name: str, data: bytes) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


@pytest.fixture
def limit(settings):
    settings.REWARDLAB_MAX_UPLOAD_BYTES = LIMIT
    return LIMIT + MULTIPART_ENVELOPE_BYTES


@pytest.fixture
def lead_client(campaign):
    client = Client()
    client.force_login(campaign.created_by)
    return client


def _post(
    client, url: str, body: CountingStream, *, length: int | None, chunked: bool = False, ended: bool = True, **extra
):
    environ = {
        "wsgi.input": body,
        "CONTENT_TYPE": MULTIPART,
        "CONTENT_LENGTH": "" if length is None else str(length),
        **extra,
    }
    if chunked:
        # As gunicorn passes a chunked body on: de-chunked, ended where the body ends, with no length.
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
        environ["wsgi.input_terminated"] = ended
    # An empty `data` leaves the body to `wsgi.input`: the client neither builds nor measures one.
    return client.generic("POST", url, b"", **environ)


@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
def test_import_page_refuses_an_upload_over_the_limit_unread(lead_client, campaign, limit, htmx):
    body = CountingStream(50 * limit, may_read=0)
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}

    response = _post(lead_client, f"/campaigns/{campaign.pk}/import/", body, length=50 * limit, **headers)

    text = response.content.decode()
    assert response.status_code == 413
    refusal = f"The upload is {50 * limit} bytes; the largest package accepted is {LIMIT} bytes."
    assert f"{refusal} Nothing was imported." in text
    assert body.read_bytes == 0
    assert ImportJob.objects.count() == 0
    if htmx:
        assert response["HX-Retarget"] == "#flash", "htmx shows the refusal in the flash region"
        assert "<html" not in text


def test_import_api_refuses_an_upload_over_the_limit_unread(campaign, limit):
    token, _ = Token.objects.get_or_create(user=campaign.created_by)
    body = CountingStream(2 * limit, may_read=0)

    response = _post(
        Client(),
        f"/api/v1/campaigns/{campaign.pk}/imports/",
        body,
        length=2 * limit,
        HTTP_AUTHORIZATION=f"Token {token}",
    )

    assert response.status_code == 413
    refusal = f"The upload is {2 * limit} bytes; the largest package accepted is {LIMIT} bytes."
    assert response.json() == {"detail": f"{refusal} Nothing was imported."}
    assert body.read_bytes == 0
    assert ImportJob.objects.count() == 0


@pytest.mark.parametrize(
    "url", ["/campaigns/{c}/settings/", "/campaigns/{c}/members/", "/api/v1/annotations/", "/login/"]
)
def test_addresses_that_take_no_file_refuse_a_large_body_unread(lead_client, campaign, url):
    size = django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1
    body = CountingStream(size, may_read=0)
    before = Campaign.objects.filter(pk=campaign.pk).values().get()

    response = _post(lead_client, url.format(c=campaign.pk), body, length=size)

    assert response.status_code == 413
    assert f"The request body is {size} bytes; this address takes no file" in response.content.decode()
    assert "Nothing was done." in response.content.decode()
    assert body.read_bytes == 0
    assert Campaign.objects.filter(pk=campaign.pk).values().get() == before


def test_a_chunked_upload_over_the_limit_is_refused_one_byte_past_it(lead_client, campaign, limit):
    """No length to judge by: the body is read until it passes the limit, then refused; the rest stays unread."""
    body = CountingStream(50 * limit, may_read=limit + 1)

    response = _post(lead_client, f"/campaigns/{campaign.pk}/import/", body, length=None, chunked=True)

    assert response.status_code == 413
    assert f"The upload is over {limit} bytes (sent without a length; read that far)" in response.content.decode()
    assert body.read_bytes == limit + 1
    assert ImportJob.objects.count() == 0


def test_a_chunked_upload_within_the_limit_is_imported(lead_client, campaign, limit):
    package = multipart_file("items.jsonl", b'{"external_id": "chunked"}\n')
    body = CountingStream(len(package), may_read=len(package), prefix=package)

    response = _post(lead_client, f"/campaigns/{campaign.pk}/import/", body, length=None, chunked=True)

    assert response.status_code == 302, response.content.decode()[:500]
    assert ImportJob.objects.get().file.read() == b'{"external_id": "chunked"}\n'


def test_a_chunked_body_a_server_does_not_end_is_not_read(lead_client, campaign, limit):
    """Without `wsgi.input_terminated` the stream has no end to read to: Django reads none of it, as before."""
    body = CountingStream(50 * limit, may_read=0)

    response = _post(lead_client, f"/campaigns/{campaign.pk}/import/", body, length=None, chunked=True, ended=False)

    assert response.status_code == 422
    assert "Choose a .zip, .jsonl, .json or .parquet file to import." in response.content.decode()
    assert body.read_bytes == 0


def test_a_body_longer_than_its_length_is_read_only_as_far_as_the_length(lead_client, campaign, limit):
    """A client that declares a small body and sends a huge one: the server stops at the declared length."""
    package = multipart_file("items.jsonl", b'{"external_id": "a"}\n')
    body = CountingStream(100 * limit, may_read=len(package), prefix=package)

    response = _post(lead_client, f"/campaigns/{campaign.pk}/import/", body, length=len(package))

    assert response.status_code == 302, response.content.decode()[:500]
    assert body.read_bytes == len(package)
    job = ImportJob.objects.get()
    assert job.file.read() == b'{"external_id": "a"}\n', "the file is what was declared, not what followed"


def test_an_upload_at_the_limit_is_taken_and_one_byte_over_is_refused_by_name(lead_client, campaign, limit):
    url = f"/campaigns/{campaign.pk}/import/"
    at_limit = multipart_file("items.jsonl", b"x" * LIMIT)
    over = multipart_file("items.jsonl", b"x" * (LIMIT + 1))

    taken = _post(
        lead_client, url, CountingStream(len(at_limit), may_read=len(at_limit), prefix=at_limit), length=len(at_limit)
    )
    refused = _post(lead_client, url, CountingStream(len(over), may_read=len(over), prefix=over), length=len(over))

    assert taken.status_code == 302
    assert refused.status_code == 422
    assert f"The file is {LIMIT + 1} bytes; the limit is {LIMIT}." in refused.content.decode()
    assert ImportJob.objects.count() == 1


def test_a_real_server_answers_413_before_the_body_is_sent(live_server, settings):
    """Over a socket to a running server: headers promise a terabyte, no body follows, the answer comes."""
    settings.REWARDLAB_MAX_UPLOAD_BYTES = LIMIT
    address = urlsplit(live_server.url)
    request = (
        "POST /api/v1/campaigns/1/imports/ HTTP/1.1\r\n"
        f"Host: {address.hostname}\r\n"
        f"Content-Type: {MULTIPART}\r\n"
        f"Content-Length: {10**12}\r\n\r\n"
    )
    with socket.create_connection((address.hostname, address.port), timeout=20) as connection:
        connection.sendall(request.encode())
        answer = b""
        while b"\r\n\r\n" not in answer or b"Nothing was imported." not in answer:
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large", answer[:300]
    assert b"Nothing was imported." in answer
