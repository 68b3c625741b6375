"""Create the demo campaign of `make demo`: users of each role and a synthetic import package."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from annotate.models import Campaign
from annotate.services.campaigns import campaign_create, membership_set
from annotate.services.imports import import_package
from rewardlab.synthetic import SyntheticConfig, write_package

DEMO_CAMPAIGN = "Demo: synthetic scenes"
# (username, password, role); printed at the end so a newcomer can log in as each kind of user.
DEMO_USERS = [
    ("lead", "lead-demo-pw", "lead"),
    ("annotator1", "annotator1-demo-pw", "annotator"),
    ("annotator2", "annotator2-demo-pw", "annotator"),
    ("researcher", "researcher-demo-pw", "researcher"),
]
ADMIN = ("admin", "admin-demo-pw")


class Command(BaseCommand):
    help = "Create (or refresh) the demo campaign, its users and its synthetic data; print the logins."

    def add_arguments(self, parser):
        parser.add_argument("--items", type=int, default=120, help="Synthetic items to import the first time.")

    def handle(self, *args, items: int, **options):
        User = get_user_model()
        with transaction.atomic():
            for username, password, _ in [*DEMO_USERS, (*ADMIN, None)]:
                user, _ = User.objects.get_or_create(username=username)
                user.is_staff = user.is_superuser = username == ADMIN[0]
                user.set_password(password)
                user.save()
            campaign = Campaign.objects.filter(name=DEMO_CAMPAIGN).first()
            if campaign is None:
                campaign = campaign_create(
                    created_by=User.objects.get(username="lead"),
                    name=DEMO_CAMPAIGN,
                    overlap=2,
                    show_facts=True,
                    gold_share=0.1,
                    instructions="Compare the two answers against the image. Flag the one that claims "
                    "something the image does not show, and say how much better the other one is.",
                )
            for username, _, role in DEMO_USERS:
                membership_set(campaign=campaign, username=username, role=role)
        if not campaign.items.exists():
            package = Path(settings.VAR_DIR) / "demo" / "demo.zip"
            package.parent.mkdir(parents=True, exist_ok=True)
            write_package(SyntheticConfig(n_items=items, seed=0, prior_noise=0.2, gold_share=0.1), package)
            summary = import_package(campaign=campaign, path=package)
            self.stdout.write(f"Imported {summary.items} items and {summary.pairs} pairs into '{campaign.name}'.")
            self.stdout.write("Queued the first model run: the worker trains a reward model on the prior labels.")
        self._print_logins()

    def _print_logins(self) -> None:
        self.stdout.write(self.style.SUCCESS("\nRewardLab demo at http://127.0.0.1:8000  (API docs: /api/docs/)"))
        for username, password, role in [*DEMO_USERS, (*ADMIN, "staff (Django admin at /admin/)")]:
            self.stdout.write(f"  {role:<32} {username:<12} {password}")
