"""The web floors of bench/floor.py: what answering a Firehose-sized POST costs before any of the product's work.

    gunicorn floor_wsgi:bare     --pythonpath bench   # gunicorn and HTTP: read the body, json.loads, answer
    gunicorn floor_wsgi:django   --pythonpath bench   # the same through Django with the product's settings

`django` is the product's settings and middleware with one view in place of the product's URLs:
it reads the body, decodes it and answers, touching no database. Nothing here is product code.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cioaudience.settings")

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

django = get_wsgi_application()
settings.ROOT_URLCONF = __name__  # this module's urlpatterns, read by the handler on each request


@csrf_exempt
def decode_only(request: HttpRequest) -> JsonResponse:
    data = json.loads(request.body)
    return JsonResponse({"profiles": len(data.get("user_profiles") or ())})


urlpatterns = [path("api/mparticle/firehose", decode_only)]


def bare(environ, start_response):  # type: ignore[no-untyped-def]
    size = int(environ.get("CONTENT_LENGTH") or 0)
    data = json.loads(environ["wsgi.input"].read(size))
    body = json.dumps({"profiles": len(data.get("user_profiles") or ())}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
