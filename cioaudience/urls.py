from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from connections.firehose.views import firehose
from connections.views_health import healthz

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("api/mparticle/firehose", firehose, name="firehose"),
]
