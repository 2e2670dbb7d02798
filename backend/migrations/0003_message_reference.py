"""Messages keep the sources of an answer over knowledge bases (`reference`)."""

from orjson import loads
from tortoise import fields, migrations
from tortoise.fields.data import JSON_DUMPS
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0002_knowledge")]

    initial = False

    operations = [
        ops.AddField(
            model_name="Message",
            name="reference",
            field=fields.JSONField(null=True, encoder=JSON_DUMPS, decoder=loads),
        ),
    ]
