"""The life of an export snapshot: asked for, sent to a worker, written once, downloaded (API.md, "Export formats").

A snapshot's content is fixed when it is asked for, not when a worker gets to it: the request records the
cutoff (the newest annotation, prior label, pair and pair score of the campaign), the active model run, the campaign
settings the rows depend on and the code version, and the worker reads only what that record allows
(`annotate.exports.rows.Spec`). Labels given later never enter it; the file is written once, through a
temp file renamed into place, and its SHA-256 and row count are recorded. A run redone after a worker died
writes the same bytes again (`annotate.exports.writer`).

A snapshot is a job (`annotate.services.jobs`): sent, taken under its lock, reaped when its worker is lost,
as imports and model runs are. A worker writes inside a work folder of its own beside the target
(`.snapshot-<id>-….tmp/`: the temp file and the writer's staging), so nothing half written ever has the
file's name. A worker killed mid-write leaves its work folder behind; the reaper queues the snapshot
again, and the next worker deletes the folder and writes the same bytes. A dropped database connection
puts the snapshot back in the queue for its task to retry (`may_retry`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path

from django.contrib.auth.models import AbstractBaseUser
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import Max, QuerySet

from annotate import access, clock
from annotate.exceptions import TRANSIENT_DB_ERRORS, ApplicationError, ConflictError, NotFoundError
from annotate.exports.card import Summary, render
from annotate.exports.features import features_of, row_encoder
from annotate.exports.filters import ExportFilters
from annotate.exports.formats import FORMATS, Format, corrupted_name, dataset_info, keeps
from annotate.exports.labels import Verdicts
from annotate.exports.parquet import ParquetSnapshotWriter
from annotate.exports.rows import Cutoff, PairRow, Spec, annotation_rows, pair_rows, verdicts_at
from annotate.exports.writer import SnapshotWriter, file_sha256
from annotate.models import Annotation, Campaign, ExportSnapshot, Pair, PairScore, PriorLabel
from annotate.quality.agreement import campaign_alpha
from annotate.services.jobs import (
    ProgressCallback,
    Throttled,
    job_fail,
    job_lock,
    job_progress,
    job_requeue,
    job_send,
    job_succeed,
    job_taken,
    job_update,
)
from annotate.services.priorities import DEFAULT_THRESHOLDS
from rewardlab.config import TrainConfig, margins_for
from rewardlab.corrupt import corrupt_image_bytes

EXPORT_DIR = "exports"
# Progress stays below this until the file is in place.
PROGRESS_WRITING = 0.99
CODE_VERSION_ENV = "REWARDLAB_CODE_VERSION"  # e.g. the git commit, set when the image is built
MEDIA_TYPES = {".zip": "application/zip", ".jsonl": "application/x-ndjson"}
IMAGE_CACHE = 16  # image files a Parquet export keeps read, for the rows that show one again soon

logger = logging.getLogger(__name__)


def code_version() -> str:
    """Return the installed rewardlab version, plus REWARDLAB_CODE_VERSION (a commit) when it is set."""
    try:
        version = metadata.version("rewardlab")
    except metadata.PackageNotFoundError:
        version = "unknown"
    commit = os.environ.get(CODE_VERSION_ENV, "").strip()
    return f"{version}+{commit}" if commit else version


def export_container_parse(container: str) -> str:
    """Return the snapshot's container; raise ApplicationError listing the containers otherwise."""
    choices = ExportSnapshot.Container.values
    if container not in choices:
        message = f"Expected one of {', '.join(choices)}, got {container!r}."
        raise ApplicationError(message, extra={"fields": {"container": message}})
    return container


def export_filters_parse(*, format: str, filters: dict) -> ExportFilters:
    """Return the filters of a snapshot in `format`; raise ApplicationError naming each bad field."""
    if format not in FORMATS:
        message = f"Expected one of {', '.join(FORMATS)}, got {format!r}."
        raise ApplicationError(message, extra={"fields": {"format": message}})
    known = [field.name for field in dataclasses.fields(ExportFilters)]
    unknown = sorted(set(filters) - set(known))
    if unknown:
        message = f"Unknown filter {unknown[0]!r}; the filters are {', '.join(known)}."
        raise ApplicationError(message, extra={"fields": {"filters": message}})
    parsed = ExportFilters(**filters)
    errors = parsed.errors()
    if FORMATS[format].corrupted and not parsed.images:
        errors["images"] = f"The {format} format writes corrupted images into the zip; it needs images."
    if errors:
        fields = {f"filters.{name}": message for name, message in errors.items()}
        raise ApplicationError("The export filters are not valid.", extra={"fields": fields})
    return parsed


def _cutoff(campaign: Campaign) -> Cutoff:
    def newest(rows: QuerySet) -> int:
        return rows.aggregate(newest=Max("id"))["newest"] or 0

    return Cutoff(
        at=clock.now(),
        annotation=newest(Annotation.objects.filter(pair__campaign=campaign)),
        prior=newest(PriorLabel.objects.filter(pair__campaign=campaign)),
        pair=newest(Pair.objects.filter(campaign=campaign)),
        score=newest(PairScore.objects.filter(run_id=campaign.active_model_id)),
    )


def _campaign_settings(campaign: Campaign) -> dict:
    """Record the settings the rows depend on (margins are added by the worker, `_margins`)."""
    return {
        "strength_scale": campaign.strength_scale,
        "strength_labels": list(campaign.strength_labels),
        "overlap": campaign.overlap,
        "gold_share": campaign.gold_share,
        "surface_thresholds": {**DEFAULT_THRESHOLDS, **campaign.surface_thresholds},
        "prior_trust": TrainConfig.prior_trust,
    }


def export_snapshot_create(
    *,
    campaign: Campaign,
    format: str,
    filters: dict,
    created_by: AbstractBaseUser,
    container: str = ExportSnapshot.Container.JSONL,
) -> ExportSnapshot:
    """Record a snapshot of the campaign as it is now and queue its writing; the request returns at once."""
    parsed = export_filters_parse(format=format, filters=filters)
    container = export_container_parse(container)
    with transaction.atomic():
        snapshot = ExportSnapshot.objects.create(
            campaign=campaign,
            created_by=created_by,
            format=format,
            container=container,
            filters=parsed.as_json(),
            model_run_id=campaign.active_model_id,
            campaign_settings=_campaign_settings(campaign),
            cutoff=_cutoff(campaign).as_json(),
            code_version=code_version(),
        )
        transaction.on_commit(lambda: job_send(snapshot))
    return snapshot


def export_snapshot_for(user: AbstractBaseUser, snapshot_id: int) -> ExportSnapshot:
    """Return a snapshot if the user may read its campaign's data."""
    snapshots = ExportSnapshot.objects.select_related("campaign", "created_by")
    return access.campaign_object_for(user, snapshots, snapshot_id, access.READ_DATA, what="export snapshot")


def exports_of(campaign: Campaign) -> QuerySet[ExportSnapshot]:
    """Return the campaign's snapshots, newest first."""
    return campaign.exports.select_related("created_by").order_by("-id")


def export_snapshot_file(snapshot: ExportSnapshot) -> Path:
    """Return the written file of a succeeded snapshot; refuse (409) before that."""
    if snapshot.status != ExportSnapshot.Status.SUCCEEDED:
        raise ConflictError(
            f"Snapshot {snapshot.pk} is {snapshot.status}; its file can be downloaded once it has succeeded.",
            extra={"status": snapshot.status},
        )
    path = Path(default_storage.path(snapshot.file.name))
    if not path.is_file():
        raise NotFoundError(f"The file of snapshot {snapshot.pk} is missing from storage.")
    return path


def download_name(snapshot: ExportSnapshot) -> str:
    return f"rewardlab-c{snapshot.campaign_id}-snapshot{snapshot.pk}-{_kind(snapshot)}{Path(snapshot.file.name).suffix}"


def _kind(snapshot: ExportSnapshot) -> str:
    """Name the format, and the container when it is not the default: `reward`, `reward-parquet`."""
    if snapshot.container == ExportSnapshot.Container.JSONL:
        return snapshot.format
    return f"{snapshot.format}-{snapshot.container}"


def media_type(snapshot: ExportSnapshot) -> str:
    return MEDIA_TYPES[Path(snapshot.file.name).suffix]


# The worker's side.


def export_snapshot_run(*, snapshot_id: int, worker: str = "", may_retry: bool = False) -> ExportSnapshot | None:
    """Write a snapshot's file for this worker; None when it is not to be written (`jobs.job_taken`): a
    finished snapshot, or one another live worker is writing, is left as it is.

    A snapshot whose worker died is written again: the rerun writes the same bytes to a fresh temp file
    before renaming it into place. With `may_retry`, a database error that may pass (a dropped connection)
    queues the snapshot again and is raised for the task to retry; otherwise it fails the snapshot.
    """
    with job_taken(ExportSnapshot, snapshot_id, worker=worker) as snapshot:
        if snapshot is None:
            return None
        _work_delete(snapshot)  # what a worker killed mid-write left; with the lock, nobody else writes there
        try:
            job_succeed(snapshot, **_write(snapshot))
        except ApplicationError as exc:
            job_fail(snapshot, exc.message)
        except TRANSIENT_DB_ERRORS as exc:
            _after_transient(snapshot, exc, may_retry=may_retry)
            raise
        except Exception as exc:
            _fail_unexpected(snapshot, exc)
            raise
    return snapshot


def _after_transient(snapshot: ExportSnapshot, exc: BaseException, *, may_retry: bool) -> None:
    """Queue the snapshot again for the task's retry (or, on the last try, fail it) over a fresh connection.

    The error most likely ended this session, and the job lock with it: a reaper may have queued the
    snapshot again meanwhile and another worker be writing it. So the state is written only when the lock
    can be taken again, by the session that writes it.
    """
    connection.close()
    with job_lock(snapshot) as owner:
        if not owner:
            logger.info("Export snapshot %s: another worker took it over after %s.", snapshot.pk, exc)
        elif may_retry:
            job_requeue(snapshot, reason=f"Retrying after a database error: {exc}")
        else:
            _fail_unexpected(snapshot, exc)


def _fail_unexpected(snapshot: ExportSnapshot, exc: BaseException) -> None:
    job_fail(snapshot, f"The export stopped on an unexpected error ({type(exc).__name__}); no file was written.")


def _margins(snapshot: ExportSnapshot) -> list[float]:
    """Return the margins per strength as training builds them for this strength scale, and record them."""
    if "margins" not in snapshot.campaign_settings:
        margins = list(margins_for(snapshot.campaign_settings["strength_scale"]))
        job_update(snapshot, campaign_settings={**snapshot.campaign_settings, "margins": margins})
    return snapshot.campaign_settings["margins"]


def _spec(snapshot: ExportSnapshot) -> Spec:
    """Read everything the rows depend on from the snapshot's record; refuse when the model's scores are gone."""
    run = snapshot.model_run
    if run is not None and run.artifact_pruned:
        raise ConflictError(
            f"The scores of model run {run.pk}, active when this snapshot was asked for, have been pruned since; "
            "ask for a new snapshot."
        )
    margins = _margins(snapshot)
    settings = snapshot.campaign_settings
    return Spec(
        campaign_id=snapshot.campaign_id,
        filters=ExportFilters.from_json(snapshot.filters),
        cutoff=Cutoff.from_json(snapshot.cutoff),
        run_id=snapshot.model_run_id,
        noise_threshold=settings["surface_thresholds"]["suspected_noise"],
        margins=tuple(margins),
        prior_trust=settings["prior_trust"],
    )


def _file_name(snapshot: ExportSnapshot, suffix: str) -> str:
    return f"{EXPORT_DIR}/campaign-{snapshot.campaign_id}/snapshot-{snapshot.pk}-{_kind(snapshot)}{suffix}"


def _work_delete(snapshot: ExportSnapshot) -> None:
    """Delete what writes of this snapshot left unfinished: their work folders (older runs left bare temp files)."""
    folder = Path(default_storage.path(_file_name(snapshot, ""))).parent
    for path in folder.glob(f".snapshot-{snapshot.pk}-*.tmp"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _write(snapshot: ExportSnapshot) -> dict:
    """Write the snapshot's file into place; return the fields that describe it."""
    spec = _spec(snapshot)
    fmt = FORMATS[snapshot.format]
    verdicts = verdicts_at(spec)
    scale = snapshot.campaign_settings["strength_scale"]
    summary = Summary(
        alpha_choice=campaign_alpha(verdicts.human.sample, level="nominal", scale=scale),
        alpha_strength=campaign_alpha(verdicts.human.sample, level="ordinal", scale=scale),
    )
    parquet = snapshot.container == ExportSnapshot.Container.PARQUET
    name = _file_name(snapshot, ".zip" if spec.filters.images or parquet else ".jsonl")
    target = Path(default_storage.path(name))
    target.parent.mkdir(parents=True, exist_ok=True)
    # One folder per write holds the temp file and the writer's staging, so one delete clears it whatever stops it.
    work = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    work.mkdir()
    try:
        temp = work / target.name
        progress = Throttled(job_progress(snapshot, most=PROGRESS_WRITING))
        with _writer(temp, snapshot, fmt, spec) as writer:
            for split, line in _lines(fmt, spec, verdicts, writer, summary, progress):
                writer.add_row(split, line)
                summary.rows[split] += 1
            if isinstance(writer, ParquetSnapshotWriter):
                _add_hub_card(writer, snapshot, summary)
            elif writer.packed:
                _add_card(writer, snapshot, fmt, summary)
        os.replace(temp, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"file": name, "rows": writer.rows, "sha256": file_sha256(target), "size_bytes": target.stat().st_size}


def _writer(path: Path, snapshot: ExportSnapshot, fmt: Format, spec: Spec) -> SnapshotWriter:
    if snapshot.container == ExportSnapshot.Container.PARQUET:
        features = features_of(fmt, images=spec.filters.images)
        return ParquetSnapshotWriter(path, features=features, timestamp=snapshot.created_at)
    return SnapshotWriter(path, packed=spec.filters.images, timestamp=snapshot.created_at)


def _lines(
    fmt: Format, spec: Spec, verdicts: Verdicts, writer: SnapshotWriter, summary: Summary, progress: ProgressCallback
) -> Iterator[tuple[str, dict]]:
    """Yield (split, row) of the format: with its images embedded for Parquet, else adding them to the zip."""
    if isinstance(writer, ParquetSnapshotWriter):
        return _embedded_lines(fmt, spec, verdicts, writer, summary, progress)
    return _plain_lines(fmt, spec, verdicts, writer, summary, progress)


def _plain_lines(
    fmt: Format, spec: Spec, verdicts: Verdicts, writer: SnapshotWriter, summary: Summary, progress: ProgressCallback
) -> Iterator[tuple[str, dict]]:
    """Yield (split, row) of the format, adding each row's images to the zip as it goes by."""
    for row in _kept(fmt, spec, verdicts, summary, progress):
        if writer.packed:
            _add_images(writer, fmt, row, summary)
        for line in fmt.to_rows(row):
            yield row.item.split, line


def _embedded_lines(
    fmt: Format,
    spec: Spec,
    verdicts: Verdicts,
    writer: ParquetSnapshotWriter,
    summary: Summary,
    progress: ProgressCallback,
) -> Iterator[tuple[str, dict]]:
    """Yield (split, row) of the format with its image files embedded (paths only, without images)."""
    encode = row_encoder(writer.features)
    # Consecutive rows often show one image (an item's pairs, its labels): a few files are kept, not all.
    read = functools.lru_cache(maxsize=IMAGE_CACHE)(_read_image)
    for row in _kept(fmt, spec, verdicts, summary, progress):
        files = _row_files(fmt, row, read) if spec.filters.images else {}
        for line in fmt.to_rows(row):
            yield row.item.split, encode(line, files)


def _read_image(name: str) -> bytes:
    with default_storage.open(name, "rb") as fp:
        return fp.read()


def _row_files(fmt: Format, row: PairRow, read: Callable[[str], bytes]) -> dict[str, bytes]:
    """Return the files the row names by their snapshot path: its image, and mDPO's corrupted copy."""
    data = read(row.item.image_file)
    files = {row.item.image: data}
    if fmt.corrupted:
        files[corrupted_name(row)] = corrupt_image_bytes(data, seed=corruption_seed(row))
    return files


def _kept(
    fmt: Format, spec: Spec, verdicts: Verdicts, summary: Summary, progress: ProgressCallback
) -> Iterator[PairRow]:
    """Yield the rows the format keeps (pairs, or annotations), counting pairs and what is left out."""
    if fmt.per_annotation:
        rows = annotation_rows(spec, verdicts, skipped=summary.skipped, on_progress=progress)
    else:
        rows = pair_rows(spec, verdicts, skipped=summary.skipped, on_progress=progress, spans=fmt.spans)
    last_pair = None
    for row in rows:
        reason = None if fmt.per_annotation else keeps(fmt, row)
        if reason:
            summary.skipped[reason] += 1
            continue
        if row.pair_id != last_pair:
            summary.add_pair(row.verdict)
            last_pair = row.pair_id
        yield row


def _add_images(writer: SnapshotWriter, fmt: Format, row: PairRow, summary: Summary) -> None:
    """Copy the row's image into the zip once; for mDPO add its corrupted copy, seeded by the pair."""
    new = not writer.has(row.item.image)
    if not (new or fmt.corrupted):
        return
    with default_storage.open(row.item.image_file, "rb") as fp:
        data = fp.read()
    if new:
        writer.add_member(row.item.image, data)
        summary.images += 1
    if fmt.corrupted:
        writer.add_member(corrupted_name(row), corrupt_image_bytes(data, seed=corruption_seed(row)))
        summary.corrupted += 1


def corruption_seed(row: PairRow) -> int:
    """Return the seed of a pair's corrupted image: from its identity, so every snapshot draws the same crop."""
    key = json.dumps([row.item.external_id, row.a.id, row.b.id])
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


def _add_card(writer: SnapshotWriter, snapshot: ExportSnapshot, fmt: Format, summary: Summary) -> None:
    """Move the rows into the zip, then add LLaMA-Factory's dataset_info.json and the dataset card."""
    files = writer.finish_rows()
    if fmt.name == "llamafactory":
        entry = dataset_info(f"rewardlab_c{snapshot.campaign_id}_s{snapshot.pk}", files)
        writer.add_member("dataset_info.json", (json.dumps(entry, indent=2) + "\n").encode())
    writer.add_member("README.md", render(snapshot, summary, {split: [name] for split, name in files.items()}).encode())


def _add_hub_card(writer: ParquetSnapshotWriter, snapshot: ExportSnapshot, summary: Summary) -> None:
    """Move the shards into the zip, then add README.md: the YAML header `datasets` reads, then the card."""
    files = writer.finish_rows()
    download_size = sum(writer.member_size(name) for names in files.values() for name in names)
    card = render(snapshot, summary, files)
    writer.add_member("README.md", (writer.readme_header(files, download_size) + card).encode())
