"""Importing packages of items, responses and pairs (API.md, "Import package"): all or nothing.

Pass 1 reads every line and every image and writes nothing; any problem rejects the whole file, each
bad line named. Pass 2 reads the file again and writes everything in one transaction, in batches, so
memory is bounded by a batch and not by the file. Images are stored once, by SHA-256, and shared by
every campaign that shows them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TypeVar

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction

from annotate.exceptions import ApplicationError, ImportRejectedError
from annotate.models import Campaign, Image, ImportJob, Item, Pair, PriorLabel, Response
from annotate.services.jobs import ProgressCallback, Throttled, job_fail, job_progress, job_send, job_succeed, job_taken
from annotate.services.model_runs import after_import
from rewardlab.package.images import ImageInfo, ImageRejectedError, inspect_image
from rewardlab.package.layouts import ItemSpecParser
from rewardlab.package.lines import ItemSpec, LineError
from rewardlab.package.package import (
    MAX_LINE_BYTES,
    PACKAGE_SUFFIXES,
    ImageReadError,
    Line,
    Package,
    PackageError,
    open_package,
)

BATCH_SIZE = 1000
# Enough to show a pattern in a bad file without building a huge error list.
MAX_ERRORS = 50
# Validation moves progress from 0 to VALIDATED; the write transaction is the rest.
VALIDATED = 0.9
T = TypeVar("T")


@dataclass(frozen=True)
class ImportSummary:
    items: int
    pairs: int
    priors: int
    gold: int
    images_new: int
    images_reused: int


@dataclass
class _Plan:
    """What pass 1 learned: each item line's image, in file order, and the totals pass 2 will write."""

    image_shas: list[str] = field(default_factory=list)
    images: dict[str, ImageInfo] = field(default_factory=dict)
    first_line: dict[str, Line] = field(default_factory=dict)  # external_id -> the line that brought it
    errors: list[tuple[Line | None, str]] = field(default_factory=list)  # (bad line or None, reason)
    pairs: int = 0
    priors: int = 0
    gold: int = 0

    def add(self, spec: ItemSpec, info: ImageInfo) -> None:
        self.image_shas.append(info.sha256)
        self.images[info.sha256] = info
        self.pairs += len(spec.pairs)
        self.priors += len(spec.priors)
        self.gold += len(spec.gold)


def import_package(
    *,
    campaign: Campaign,
    path: Path,
    job: ImportJob | None = None,
    on_progress: ProgressCallback | None = None,
) -> ImportSummary:
    """Import a .zip, folder or .jsonl package into a campaign, all or nothing.

    Raise ImportRejectedError listing each bad line (up to MAX_ERRORS) when anything is wrong; then
    nothing, not even an image file, has been written. `on_progress` gets fractions from 0 to 1. After
    the import, prior labels queue a retrain (`after_import`).
    """
    progress = Throttled(on_progress or _ignore_progress)
    try:
        with open_package(path) as package:
            plan = _validate(package, campaign=campaign, progress=progress)
            if plan.errors:
                raise ImportRejectedError([_error_entry(line, reason) for line, reason in plan.errors])
            images_new, images_reused = _write(package, campaign=campaign, job=job, plan=plan)
    except PackageError as exc:
        raise ImportRejectedError([{"line": None, "reason": str(exc)}]) from exc
    except IntegrityError as exc:
        # Pass 1 found none of these external_ids; only an import running at the same time can add one.
        reason = "another import added some of these external_ids while this one ran; nothing was written"
        raise ImportRejectedError([{"line": None, "reason": reason}]) from exc
    progress(1.0)
    after_import(campaign=campaign, priors=plan.priors)
    return ImportSummary(
        items=len(plan.image_shas),
        pairs=plan.pairs,
        priors=plan.priors,
        gold=plan.gold,
        images_new=images_new,
        images_reused=images_reused,
    )


def _validate(package: Package, *, campaign: Campaign, progress: ProgressCallback) -> _Plan:
    plan = _Plan()
    checked: dict[str, ImageInfo] = {}  # package path -> what it held, so a shared image is read once
    parse = ItemSpecParser(strength_scale=campaign.strength_scale)
    for line in package.lines():
        try:
            if line.too_long:
                raise LineError(f"the line is longer than {MAX_LINE_BYTES} bytes")
            spec = parse(line.data)
            first = plan.first_line.setdefault(spec.external_id, line.place())
            if first.start != line.start:
                raise LineError(f"external_id {spec.external_id!r} is already used on {first.where}")
            plan.add(spec, _image_info(package, spec.image, checked))
        except (LineError, ImageReadError, ImageRejectedError) as exc:
            plan.errors.append((line.place(), str(exc)))
            if len(plan.errors) >= MAX_ERRORS:
                break
        progress(VALIDATED * line.end / max(package.size, 1))
    if not plan.errors and not plan.image_shas:
        plan.errors.append((None, "the package has no items"))
    plan.errors.extend(_existing_ids(campaign, plan.first_line))
    plan.errors = sorted(plan.errors, key=lambda error: error[0].start if error[0] else -1)[:MAX_ERRORS]
    return plan


def _ignore_progress(fraction: float) -> None:
    """The progress callback of a caller that asked for none."""


def _error_entry(line: Line | None, reason: str) -> dict:
    """An error as the job stores it: the line's number, its file when the package has several, the reason."""
    if line is None:
        return {"line": None, "reason": reason}
    return {"line": line.number, **({"file": line.file} if line.file else {}), "reason": reason}


def _image_info(package: Package, ref: str, checked: dict[str, ImageInfo]) -> ImageInfo:
    is_data_uri = ref.startswith("data:")
    if not is_data_uri and ref in checked:
        return checked[ref]
    try:
        data = package.read_image(ref, max_bytes=settings.REWARDLAB_MAX_IMAGE_BYTES)
        info = inspect_image(
            data, max_pixels=settings.REWARDLAB_MAX_IMAGE_PIXELS, max_bytes=settings.REWARDLAB_MAX_IMAGE_BYTES
        )
    except (ImageReadError, ImageRejectedError) as exc:
        name = "(data: URI)" if is_data_uri else repr(ref)
        raise LineError(f"image {name}: {exc}") from exc
    if not is_data_uri:
        checked[ref] = info
    return info


def _existing_ids(campaign: Campaign, first_line: dict[str, Line]) -> list[tuple[Line, str]]:
    """Name each line whose external_id the campaign already has: a re-import is an error, never a copy."""
    errors = []
    for ids in _batches(first_line):
        existing = Item.objects.filter(campaign=campaign, external_id__in=ids)
        for external_id in existing.values_list("external_id", flat=True):
            reason = f"external_id {external_id!r} already exists in campaign {campaign.pk}"
            errors.append((first_line[external_id], reason))
    return errors


def _batches(rows: Iterable[T]) -> Iterator[list[T]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, BATCH_SIZE)):
        yield batch


def _write(package: Package, *, campaign: Campaign, job: ImportJob | None, plan: _Plan) -> tuple[int, int]:
    """Write every row in one transaction; return how many images were new and how many reused."""
    image_ids: dict[str, int] = {}
    for shas in _batches(plan.images):
        image_ids.update(Image.objects.filter(sha256__in=shas).values_list("sha256", "pk"))
    reused = len(image_ids)
    parse = ItemSpecParser(strength_scale=campaign.strength_scale)
    specs = (parse(line.data) for line in package.lines())
    with transaction.atomic():
        for batch in _batches(zip(specs, plan.image_shas, strict=True)):
            _store_images(package, batch=batch, infos=plan.images, image_ids=image_ids)
            _create_rows(campaign=campaign, job=job, batch=batch, image_ids=image_ids)
    return len(image_ids) - reused, reused


def _store_images(
    package: Package, *, batch: list[tuple[ItemSpec, str]], infos: dict[str, ImageInfo], image_ids: dict[str, int]
) -> None:
    """Save the batch's new images under their SHA-256 and add their rows to `image_ids`.

    Files go to storage before the transaction commits: a file left by a rolled-back import is named by
    its content, so the next import of the same bytes finds it and uses it.
    """
    new: dict[str, Image] = {}
    for spec, sha in batch:
        if sha in image_ids or sha in new:
            continue
        info = infos[sha]
        data = package.read_image(spec.image, max_bytes=settings.REWARDLAB_MAX_IMAGE_BYTES)
        name = f"images/{sha[:2]}/{sha}.{info.ext}"
        if not default_storage.exists(name):
            name = default_storage.save(name, ContentFile(data))
        new[sha] = Image(
            sha256=sha, file=name, width=info.width, height=info.height, format=info.format, size_bytes=len(data)
        )
    # An import running beside this one may store the same image first; take its row instead of failing.
    rows = Image.objects.bulk_create(
        list(new.values()), update_conflicts=True, unique_fields=["sha256"], update_fields=["sha256"]
    )
    image_ids.update((row.sha256, row.pk) for row in rows)


def _create_rows(
    *, campaign: Campaign, job: ImportJob | None, batch: list[tuple[ItemSpec, str]], image_ids: dict[str, int]
) -> None:
    specs = [spec for spec, _ in batch]
    items = [
        Item(
            campaign=campaign,
            external_id=spec.external_id,
            image_id=image_ids[sha],
            prompt=spec.prompt,
            facts=spec.facts,
            meta=spec.meta,
            import_job=job,
        )
        for spec, sha in batch
    ]
    Item.objects.bulk_create(items, batch_size=BATCH_SIZE)
    responses = [
        {r.id: Response(item=item, external_id=r.id, text=r.text, model=r.model) for r in spec.responses}
        for item, spec in zip(items, specs, strict=True)
    ]
    Response.objects.bulk_create([row for rows in responses for row in rows.values()], batch_size=BATCH_SIZE)
    pairs = [
        [
            Pair(
                campaign=campaign,
                item=item,
                a=rows[a],
                b=rows[b],
                gold_answer=spec.gold_answer(index),
                needed_labels=campaign.overlap,
            )
            for index, (a, b) in enumerate(spec.pairs)
        ]
        for item, rows, spec in zip(items, responses, specs, strict=True)
    ]
    Pair.objects.bulk_create([pair for item_pairs in pairs for pair in item_pairs], batch_size=BATCH_SIZE)
    priors = [
        PriorLabel(
            pair=item_pairs[label.pair],
            more_hallucinated=label.more_hallucinated,
            strength=label.strength,
            source=label.source,
        )
        for item_pairs, spec in zip(pairs, specs, strict=True)
        for label in spec.priors
    ]
    PriorLabel.objects.bulk_create(priors, batch_size=BATCH_SIZE)


def import_job_create(*, campaign: Campaign, upload: UploadedFile, created_by: AbstractBaseUser) -> ImportJob:
    """Save an uploaded package and queue its import; the request returns before any line is read."""
    limit = settings.REWARDLAB_MAX_UPLOAD_BYTES
    if upload.size > limit:
        message = f"The file is {upload.size} bytes; the limit is {limit}."
        raise ApplicationError(message, extra={"fields": {"file": message}})
    filename = Path(upload.name or "").name
    if Path(filename).suffix.lower() not in PACKAGE_SUFFIXES:
        message = f"Expected a {' or '.join(PACKAGE_SUFFIXES)} file, got {filename!r}."
        raise ApplicationError(message, extra={"fields": {"file": message}})
    max_length = ImportJob._meta.get_field("filename").max_length
    job = ImportJob(campaign=campaign, created_by=created_by, filename=filename[:max_length])
    with transaction.atomic():
        job.file.save(filename, upload, save=False)
        job.save()
        transaction.on_commit(lambda: job_send(job))
    return job


def import_job_run(*, job_id: int, worker: str = "") -> ImportJob | None:
    """Run an import job for this worker; None when it is not to be run (`jobs.job_taken`): a redelivered
    task does nothing. A job whose worker died is run again from the start: pass 2 is one transaction,
    so a run that dies wrote nothing."""
    with job_taken(ImportJob, job_id, worker=worker, errors=[]) as job:
        if job is None:
            return None
        try:
            summary = import_package(
                campaign=job.campaign, path=Path(job.file.path), job=job, on_progress=job_progress(job)
            )
        except ImportRejectedError as exc:
            job_fail(job, _rejected(exc.errors), errors=exc.errors)
            return job
        except Exception as exc:
            reason = f"The import stopped on an unexpected error ({type(exc).__name__}); nothing was written."
            job_fail(job, reason, errors=[{"line": None, "reason": reason}])
            raise
        job_succeed(job, items_created=summary.items, pairs_created=summary.pairs, lines_total=summary.items)
    return job


def _rejected(errors: list[dict]) -> str:
    return f"The package was rejected ({len(errors)} problem{'s' if len(errors) != 1 else ''}); nothing was written."
