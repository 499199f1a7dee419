"""Membership's two foreign-key indexes go: each duplicates the leading column of another index.

`profile_id` leads the unique (profile, audience) index and `audience_id` the (audience,
is_member) index, so lookups and cascades are served as before while every membership written
(the ingestion path's hottest table) updates two indexes fewer. The indexes are dropped by name
rather than through AlterField, which on PostgreSQL would also drop and re-validate both foreign
keys (a scan of the whole table under lock).
"""

import django.db.models.deletion
from django.db import migrations, models

DROPPED = {
    "audience": "connections_membership_audience_id_31737965",
    "profile": "connections_membership_profile_id_c3b81600",
}
TARGETS = {"audience": "connections.audience", "profile": "connections.profile"}
HELP = {"audience": "The audience.", "profile": "The person."}


def unindexed(name: str) -> migrations.AlterField:
    return migrations.AlterField(
        model_name="membership",
        name=name,
        field=models.ForeignKey(
            db_index=False,
            help_text=HELP[name],
            on_delete=django.db.models.deletion.CASCADE,
            related_name="memberships",
            to=TARGETS[name],
            verbose_name=name,
        ),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("connections", "0009_erasure"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[unindexed("audience"), unindexed("profile")],
            database_operations=[
                migrations.RunSQL(
                    f"DROP INDEX IF EXISTS {index}",
                    reverse_sql=f"CREATE INDEX IF NOT EXISTS {index} ON connections_membership ({name}_id)",
                )
                for name, index in DROPPED.items()
            ],
        ),
    ]
