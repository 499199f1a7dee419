"""Django's admin app with the overview home page (connections.admin_site); named in INSTALLED_APPS.

Apart from connections/apps.py, whose single AppConfig Django picks for "connections".
"""

from django.contrib.admin.apps import AdminConfig


class CioAdminConfig(AdminConfig):
    default_site = "connections.admin_site.CioAdminSite"
