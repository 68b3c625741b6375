# Issue 18, item 3: whether annotators see, on their My work page, how they did on the gold pairs they answered.
# Off for every existing campaign, as for new ones.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('annotate', '0016_cache_table'),
    ]

    operations = [
        migrations.AddField(
            model_name='campaign',
            name='gold_feedback',
            field=models.BooleanField(
                default=False,
                help_text='Annotators see on their My work page which gold pairs they answered right, and the right answer.',
            ),
        ),
    ]
