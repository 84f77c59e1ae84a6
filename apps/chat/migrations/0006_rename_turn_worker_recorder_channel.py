from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0005_panelanswer_reasoning"),
    ]

    operations = [
        migrations.RenameField(model_name="turn", old_name="worker", new_name="recorder_channel"),
    ]
