"""`POST /api/mparticle/firehose`: HTTP in, a parsed message to `ingest`, the protocol's answer out.

The token is checked before the body is read: without a valid one only a body small enough to
be a `module_registration_request` (FIREHOSE_UNAUTHENTICATED_MAX_BYTES) is read, and anything
larger is answered 401 unread, so an anonymous client cannot make the service parse megabytes.
Bad input gets a 4xx JSON answer `{"error": "..."}` naming what is wrong, and changes nothing.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_variables

from connections.firehose import ingest
from connections.firehose.counting import counted
from connections.firehose.messages import (
    MODULE_REGISTRATION,
    Message,
    MessageError,
    decode_body,
    message_type,
    parse_message,
)
from connections.models import InboundToken
from connections.services.ingest import tokens

READ_CHUNK = 64 * 1024
AUTH_HINT = "send the header 'Authorization: Token <token>' with a token made by `manage.py create_inbound_token`"


class Refused(Exception):
    """A request answered with an error status before its message is applied."""

    def __init__(self, status: int, error: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.headers = headers or {}


def error_response(status: int, error: str, headers: dict[str, str] | None = None) -> JsonResponse:
    return JsonResponse({"error": error}, status=status, headers=headers)


@counted  # /metrics: requests by message type and outcome
@csrf_exempt
def firehose(request: HttpRequest) -> JsonResponse:
    if request.method != "POST":
        return error_response(405, f"method {request.method} is not allowed; use POST", {"Allow": "POST"})
    try:
        message, body = read_message(request)
        outcome = ingest.handle(message, body)
    except Refused as refused:
        return error_response(refused.status, refused.error, refused.headers)
    except MessageError as invalid:
        return error_response(400, str(invalid))
    return JsonResponse(outcome.response)


def read_message(request: HttpRequest) -> tuple[Message, str]:
    """The request's message and body, authenticated unless it is a registration request (which carries no token)."""
    if request.content_type != "application/json":
        raise Refused(415, f"Content-Type must be application/json, not {(request.content_type or 'missing')[:64]!r}")
    charset = request.content_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise Refused(415, f"the body must be UTF-8, not {charset[:32]!r}")
    unauthenticated = authentication_refusal(request)
    if unauthenticated is None:
        body = read_body(request, settings.FIREHOSE_MAX_BODY_BYTES)
    else:
        try:
            body = read_body(request, settings.FIREHOSE_UNAUTHENTICATED_MAX_BYTES)
        except Refused as too_large:
            # Too large to be a registration request, which is all an anonymous client may send.
            raise unauthenticated if too_large.status == 413 else too_large from None
    data = decode_body(body)
    request.firehose_type = data.get("type")  # type: ignore[attr-defined]  # for connections.firehose.counting
    if unauthenticated is not None and message_type(data) != MODULE_REGISTRATION:
        raise unauthenticated
    # `decode_body` checked that the body is UTF-8 JSON.
    return parse_message(data), body.decode()


def read_body(request: HttpRequest, limit: int) -> bytes:
    """The body, refused (413) when Content-Length says or reading shows it is over `limit` bytes.

    Never reads more than `limit + 1` bytes, whatever the client claims.
    """
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared:
        if not (declared.isascii() and declared.isdigit()):
            raise Refused(400, f"Content-Length {declared[:32]!r} is not a number")
        if len(declared) > 18 or int(declared) > limit:
            raise Refused(413, f"Content-Length {declared[:20]} is over the {limit} bytes accepted")
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = request.read(min(READ_CHUNK, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise Refused(413, f"the body is over {limit} bytes")
    return b"".join(chunks)


def authentication_refusal(request: HttpRequest) -> Refused | None:
    """None when the request carries a valid token; otherwise the 401 to answer unless it is a registration."""
    try:
        authenticate(request)
    except Refused as refused:
        return refused
    return None


# An error report (a 500 in the lookup, say) shows each frame's variables: never these two.
@sensitive_variables("header", "token")
def authenticate(request: HttpRequest) -> InboundToken:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    challenge = {"WWW-Authenticate": "Token"}
    if not header:
        raise Refused(401, f"authentication required: {AUTH_HINT}", challenge)
    if scheme.lower() != "token" or not token.strip():
        raise Refused(401, f"unsupported Authorization header: {AUTH_HINT}", challenge)
    inbound = tokens.authenticate(token.strip())
    if inbound is None:
        raise Refused(401, "invalid or revoked token", challenge)
    return inbound
