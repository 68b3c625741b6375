# Issue 18, item 7: the table of Django's database cache, the default store of the sign-in throttles' counts
# (settings.CACHES), created by `migrate` so that no deployment needs `createcachetable` as a step of its own.
# The columns are those `createcachetable` writes; the name is settings.CACHE_TABLE's.

from django.db import migrations

CREATE = """
CREATE TABLE IF NOT EXISTS rewardlab_cache (
    cache_key varchar(255) NOT NULL PRIMARY KEY,
    value text NOT NULL,
    expires timestamp with time zone NOT NULL
);
CREATE INDEX IF NOT EXISTS rewardlab_cache_expires ON rewardlab_cache (expires);
"""


class Migration(migrations.Migration):

    dependencies = [
        ('annotate', '0015_annotation_versions'),
    ]

    operations = [
        migrations.RunSQL(CREATE, reverse_sql="DROP TABLE IF EXISTS rewardlab_cache;"),
    ]
