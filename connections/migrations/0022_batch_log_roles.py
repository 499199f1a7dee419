from importlib import import_module

from django.db import migrations

# The roles' permissions again (connections/roles.py), now that the batch log's view permission
# exists: marketers and log viewers read batch requests as they read the forwarding log.
grant_role_permissions = import_module("connections.migrations.0009_erasure").grant_role_permissions


class Migration(migrations.Migration):

    dependencies = [
        ('connections', '0021_membership_audience_profile'),
    ]

    operations = [migrations.RunPython(grant_role_permissions, migrations.RunPython.noop)]
