"""The Celery side of RewardLab: `celery -A workers worker -Q cpu,gpu`."""

from workers.app import app

__all__ = ["app"]
