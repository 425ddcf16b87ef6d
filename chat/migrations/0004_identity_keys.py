"""Identities that cannot be forged: a message's author key, and registered names claimed."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

BATCH = 1000


def claim_existing_usernames(apps, schema_editor):
    """One NameClaim per existing user, as chat.names keeps them for users saved from now on."""
    from django.contrib.auth import get_user_model

    from chat.names import skeleton

    app_label, model_name = settings.AUTH_USER_MODEL.split(".")
    User = apps.get_model(app_label, model_name)
    NameClaim = apps.get_model("chat", "NameClaim")
    username_field = get_user_model().USERNAME_FIELD
    rows = User.objects.order_by("pk").values_list("pk", username_field)
    batch = []
    for pk, username in rows.iterator(chunk_size=BATCH):
        batch.append(NameClaim(user_id=pk, skeleton=skeleton(username)))
        if len(batch) >= BATCH:
            NameClaim.objects.bulk_create(batch, ignore_conflicts=True)
            batch = []
    NameClaim.objects.bulk_create(batch, ignore_conflicts=True)


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0003_private_rooms"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="NameClaim",
            fields=[
                (
                    "user",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                ("skeleton", models.CharField(db_index=True, max_length=255)),
            ],
        ),
        migrations.AddField(
            model_name="message",
            name="author_key",
            field=models.CharField(blank=True, max_length=40, null=True),
        ),
        migrations.RunPython(claim_existing_usernames, migrations.RunPython.noop, elidable=True),
    ]
