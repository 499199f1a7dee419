"""Django's admin app with the overview home page (connections.admin_site); named in INSTALLED_APPS.
With it, django-axes' and django-otp's TOTP apps under names a person reads in the admin.

Apart from connections/apps.py, whose single AppConfig Django picks for "connections".
"""

from axes.apps import AppConfig as AxesConfig
from django.contrib.admin.apps import AdminConfig
from django_otp.plugins.otp_totp.apps import DefaultConfig as TotpConfig


class CioAdminConfig(AdminConfig):
    default_site = "connections.admin_site.CioAdminSite"


class LoginLockoutConfig(AxesConfig):
    verbose_name = "Login lockouts"


class TwoFactorConfig(TotpConfig):
    verbose_name = "Two-factor login"
