from django.db import migrations, models


def verified_by_past_deliveries(apps, schema_editor):
    # A connection Customer.io has taken updates from has credentials it accepted.
    Connection = apps.get_model("connections", "Connection")
    Connection.objects.filter(last_success_at__isnull=False).update(credentials_verified_at=models.F("last_success_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("connections", "0017_delivery_customer_prefix_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="connection",
            name="credentials_verified_at",
            field=models.DateTimeField(
                blank=True,
                editable=False,
                help_text="When Customer.io last accepted the current Site ID and API key; empty: not verified yet.",
                null=True,
                verbose_name="credentials verified at",
            ),
        ),
        migrations.RunPython(verified_by_past_deliveries, migrations.RunPython.noop),
    ]
