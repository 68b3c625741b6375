"""`python manage.py import_package CAMPAIGN_ID PATH`: the upload's import, run here and now."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from annotate.exceptions import ImportRejectedError, import_error_where
from annotate.models import Campaign
from annotate.services.imports import import_package

PERCENT = 100


class Command(BaseCommand):
    help = (
        "Import a .zip, .jsonl, .json or .parquet package into a campaign, all or nothing (API.md, 'Import package')."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("campaign_id", type=int)
        parser.add_argument("path", type=Path)

    def handle(self, *args: Any, campaign_id: int, path: Path, **options: Any) -> None:
        campaign = Campaign.objects.filter(pk=campaign_id).first()
        if campaign is None:
            raise CommandError(f"No campaign {campaign_id}.")
        if not path.is_file():
            raise CommandError(f"No file at {path}.")
        with tqdm(total=PERCENT, unit="%", desc=path.name, disable=options["verbosity"] == 0) as bar:

            def show(fraction: float) -> None:
                bar.update(round(fraction * PERCENT) - bar.n)

            try:
                summary = import_package(campaign=campaign, path=path, on_progress=show)
            except ImportRejectedError as exc:
                bar.close()
                for error in exc.errors:
                    self.stderr.write(f"{import_error_where(error)}: {error['reason']}")
                raise CommandError(f"Import rejected with {len(exc.errors)} error(s); nothing was written.") from exc
        self.stdout.write(
            f"Imported {summary.items} items, {summary.pairs} pairs ({summary.gold} gold), {summary.priors} prior "
            f"labels; images: {summary.images_new} new, {summary.images_reused} already stored."
        )
