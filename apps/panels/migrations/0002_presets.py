from __future__ import annotations

from django.db import migrations


def sync_presets(apps, schema_editor):
    # Reads apps.panels.presets at migration time; a later change of the presets ships with a new migration
    # that calls the same function, so every deployment converges on the current data.
    from apps.panels.presets import sync_preset_rows

    sync_preset_rows(apps.get_model("panels", "Panel"), apps.get_model("panels", "PanelMember"))


class Migration(migrations.Migration):
    dependencies = [("panels", "0001_initial")]

    operations = [migrations.RunPython(sync_presets, migrations.RunPython.noop)]
