"""Model runs as services, in one process: request, train, score, switch the active model, surface pairs."""

from __future__ import annotations

import pytest

from annotate.models import ModelRun, Pair, PairScore
from annotate.services.imports import import_package
from annotate.services.model_runs import model_run_request, model_run_request_by_lead
from annotate.services.training import model_run_execute
from annotate.exceptions import ConflictError
from rewardlab.synthetic import SyntheticConfig, write_package


@pytest.fixture
def imported(campaign, tmp_path):
    package = write_package(SyntheticConfig(n_items=60, seed=5, prior_noise=0.2), tmp_path / "p.zip")
    import_package(campaign=campaign, path=package)
    return campaign


def test_an_import_with_priors_queues_one_run(imported):
    run = ModelRun.objects.get(campaign=imported)
    assert run.status == "queued" and run.trigger == "import"
    again, created = model_run_request(campaign=imported, trigger="lead")
    assert again == run and not created
    with pytest.raises(ConflictError):
        model_run_request_by_lead(campaign=imported, requested_by=imported.created_by)


def test_a_run_scores_every_pair_and_becomes_the_active_model(imported):
    run = ModelRun.objects.get(campaign=imported)
    model_run_execute(run_id=run.pk, worker="here")
    run.refresh_from_db()
    imported.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.stage == "done" and run.progress == 1.0
    assert imported.active_model == run
    assert PairScore.objects.filter(run=run).count() == Pair.objects.filter(campaign=imported).count() == 60
    assert len(run.artifact_sha256) == 64
    assert "labels" in run.metrics and "surfaced" in run.metrics
    assert Pair.objects.filter(campaign=imported).exclude(surfaced=[]).exists()
