from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from connections.firehose.views import firehose
from connections.views_health import healthz
from connections.views_metrics import metrics_view

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("api/mparticle/firehose", firehose, name="firehose"),
]
