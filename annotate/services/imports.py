"""Importing packages of items, responses and pairs (API.md, "Import package"): all or nothing.

Pass 1 reads every line and every image and writes nothing but a temporary spool of the parsed items;
any problem rejects the whole file, each bad line named. Pass 2 writes the spooled items in one
transaction, in batches, so memory is bounded by a batch and not by the file, reading only the images
that are new. Images are stored once, by SHA-256, and shared by every campaign that shows them.

A line that repeats an external_id with the same image and prompt adds its responses, pairs and labels to
the item (`rewardlab.package.merge`): pass 1 reads the item's first line again and keeps the merged item
aside, so memory grows with the ids that repeat, not with the file, and pass 2 writes the merged item in the
first line's place.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import IO, NamedTuple, TypeVar

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, connection, transaction
from django.db.models import Model
from django.utils import timezone

from annotate.bulk import ids_reserve, rows_insert, staged_select
from annotate.exceptions import ApplicationError, ImportRejectedError
from annotate.models import Campaign, Image, ImportJob, Item, Pair, PriorLabel, Response
from annotate.services.import_mappings import import_mapping_resolve
from annotate.services.jobs import ProgressCallback, Throttled, job_fail, job_progress, job_send, job_succeed, job_taken
from annotate.services.model_runs import after_import
from rewardlab.package.images import ImageInfo, ImageRejectedError, inspect_image
from rewardlab.package.layouts import ItemSpecParser
from rewardlab.package.lines import ItemSpec, LineError
from rewardlab.package.mapping import ColumnMapping
from rewardlab.package.merge import different_image, merge_items
from rewardlab.package.package import (
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
# Validation moves progress from 0 to VALIDATED; the write transaction is the rest. Nothing it writes is
# seen before it commits, the job's progress included, so the bar waits there: about half of a large
# import's time since its rows go in by COPY (bench/import_speed.py).
VALIDATED = 0.5
# The mode a new image file is opened with (umask applies), as Python's open() would.
FILE_MODE = 0o666
# The columns COPY writes; PAIR_DEFAULTED take the model's defaults (`_defaults`).
IMAGE_COLUMNS = (
    ("sha256", "text"),
    ("file", "text"),
    ("width", "integer"),
    ("height", "integer"),
    ("format", "text"),
    ("size_bytes", "integer"),
)
ITEM_COLUMNS = (
    "id", "campaign_id", "external_id", "image_id", "prompt", "facts", "meta", "import_job_id", "created_at"
)  # fmt: skip
RESPONSE_COLUMNS = ("id", "item_id", "external_id", "text", "model")
PAIR_COLUMNS = ("id", "campaign_id", "item_id", "a_id", "b_id", "gold_answer", "needed_labels")
PAIR_DEFAULTED = ("priority", "labels_count", "status", "surfaced", "consensus")
PRIOR_COLUMNS = ("pair_id", "more_hallucinated", "strength", "source")
T = TypeVar("T")


@dataclass(frozen=True)
class ImportSummary:
    items: int
    pairs: int
    priors: int
    gold: int
    images_new: int
    images_reused: int


class _ItemRow(NamedTuple):
    """One item line as pass 2 writes it: plain values, so a batch pickles and loads at C speed.

    `responses` are (id, text, model); `pairs` (a id, b id, gold answer or ""); `priors` (pair index,
    answer, strength, source). `facts` and `meta` are JSON text already.
    """

    external_id: str
    image: str
    sha256: str
    prompt: str
    facts: str
    meta: str
    responses: tuple[tuple[str, str, str], ...]
    pairs: tuple[tuple[str, str, str], ...]
    priors: tuple[tuple[int, str, int | None, str], ...]


def _item_row(spec: ItemSpec, sha: str) -> _ItemRow:
    return _ItemRow(
        external_id=spec.external_id,
        image=spec.image,
        sha256=sha,
        prompt=spec.prompt,
        facts=json.dumps(spec.facts),
        meta=json.dumps(spec.meta),
        responses=tuple((r.id, r.text, r.model) for r in spec.responses),
        pairs=tuple((a, b, spec.gold_answer(index)) for index, (a, b) in enumerate(spec.pairs)),
        priors=tuple((label.pair, label.more_hallucinated, label.strength, label.source) for label in spec.priors),
    )


@dataclass
class _Plan:
    """What pass 1 learned: every item as pass 2 will write it, each image, and the totals.

    The items are spooled to a temporary file in pickled batches, so pass 2 neither reads nor parses the
    lines again (half the CPU of a large import went to doing that twice) and memory holds one batch.
    """

    spool: IO[bytes]
    first_spec: Callable[[Line], ItemSpec]  # the item of an earlier line, read and parsed again
    images: dict[str, ImageInfo] = field(default_factory=dict)
    first_line: dict[str, Line] = field(default_factory=dict)  # external_id -> the line that brought it
    first_image: dict[str, str] = field(default_factory=dict)  # external_id -> its image's SHA-256
    merged: dict[str, ItemSpec] = field(default_factory=dict)  # external_id -> the item of the lines repeating it
    errors: list[tuple[Line | None, str]] = field(default_factory=list)  # (bad line or None, reason)
    items: int = 0
    pairs: int = 0
    priors: int = 0
    gold: int = 0
    batch: list[_ItemRow] = field(default_factory=list)

    def add(self, line: Line, spec: ItemSpec, info: ImageInfo) -> None:
        """Add a line's item, or merge it into the item of an earlier line with its id; raise LineError."""
        first = self.first_line.get(spec.external_id)
        if first is not None:
            self._merge(first, line, spec, info)
            return
        sha = self.images.setdefault(info.sha256, info).sha256  # one string per image, however many items
        self.first_line[spec.external_id] = line.place()
        self.first_image[spec.external_id] = sha
        self.batch.append(_item_row(spec, sha))
        if len(self.batch) >= BATCH_SIZE:
            self._flush()
        self.items += 1
        self._count(spec, sign=1)

    def rows(self, batch: list[_ItemRow]) -> list[_ItemRow]:
        """Return the batch with each item that later lines repeat as merged."""
        return [_item_row(self.merged[row.external_id], row.sha256) if row.external_id in self.merged else row
                for row in batch]  # fmt: skip

    def _merge(self, first: Line, line: Line, spec: ItemSpec, info: ImageInfo) -> None:
        external_id = spec.external_id
        if info.sha256 != self.first_image[external_id]:
            raise different_image(external_id, first_where=first.where, later_where=line.where)
        item = self.merged.get(external_id) or self.first_spec(first)
        merged = merge_items(item, spec, first_where=first.where, later_where=line.where)
        self.merged[external_id] = merged
        self._count(item, sign=-1)
        self._count(merged, sign=1)

    def _count(self, spec: ItemSpec, *, sign: int) -> None:
        self.pairs += sign * len(spec.pairs)
        self.priors += sign * len(spec.priors)
        self.gold += sign * len(spec.gold)

    def batches(self) -> Iterator[list[_ItemRow]]:
        """Yield the spooled items, in file order, a batch at a time."""
        self._flush()
        self.spool.seek(0)
        while True:
            try:
                yield pickle.load(self.spool)
            except EOFError:
                return

    def _flush(self) -> None:
        if self.batch:
            pickle.dump(self.batch, self.spool, protocol=pickle.HIGHEST_PROTOCOL)
            self.batch = []


def import_package(
    *,
    campaign: Campaign,
    path: Path,
    job: ImportJob | None = None,
    on_progress: ProgressCallback | None = None,
    mapping: ColumnMapping | None = None,
) -> ImportSummary:
    """Import a .zip, folder, .jsonl, .json or .parquet package into a campaign, all or nothing.

    Raise ImportRejectedError listing each bad line (up to MAX_ERRORS) when anything is wrong; then
    nothing, not even an image file, has been written. `on_progress` gets fractions from 0 to 1. After
    the import, prior labels queue a retrain (`after_import`). With a `mapping`, every line is read
    through it instead of in the layout its first line shows.
    """
    progress = Throttled(on_progress or _ignore_progress)
    try:
        with open_package(path) as package, tempfile.TemporaryFile() as spool:
            plan = _validate(package, campaign=campaign, progress=progress, spool=spool, mapping=mapping)
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
        items=plan.items,
        pairs=plan.pairs,
        priors=plan.priors,
        gold=plan.gold,
        images_new=images_new,
        images_reused=images_reused,
    )


def _validate(
    package: Package,
    *,
    campaign: Campaign,
    progress: ProgressCallback,
    spool: IO[bytes],
    mapping: ColumnMapping | None = None,
) -> _Plan:
    """Check every line, a batch at a time: a thread decodes one batch's images while the next is parsed."""
    parse = ItemSpecParser(strength_scale=campaign.strength_scale, mapping=mapping)
    plan = _Plan(spool, first_spec=lambda line: parse(package.read_line(line.start)))
    with _Inspector() as inspector:
        parsed: list[tuple[Line, ItemSpec, _Inspection]] = []  # the batch whose images are being checked
        for lines in _batches(package.lines()):
            previous, parsed = parsed, []
            for line in lines:
                try:
                    spec = _line_spec(line, parse=parse)
                    parsed.append((line, spec, inspector.inspect(package, spec.image)))
                except LineError as exc:
                    plan.errors.append((line.place(), str(exc)))
            inspector.batch_end()
            _plan_add(plan, previous)
            if len(plan.errors) >= MAX_ERRORS:
                break
            progress(VALIDATED * lines[-1].end / max(package.size, 1))
        _plan_add(plan, parsed)
    if not plan.errors and not plan.items:
        plan.errors.append((None, "the package has no items"))
    plan.errors.extend(_existing_ids(campaign, plan.first_line))
    plan.errors = sorted(plan.errors, key=lambda error: error[0].start if error[0] else -1)[:MAX_ERRORS]
    return plan


def _line_spec(line: Line, *, parse: ItemSpecParser) -> ItemSpec:
    """Parse a line; raise LineError naming the problem (a line the package could not read gives its own)."""
    if line.error:
        raise LineError(line.error)
    return parse(line.data)


def _plan_add(plan: _Plan, parsed: list[tuple[Line, ItemSpec, _Inspection]]) -> None:
    """Add each parsed line whose image passed to the plan, in file order; the others are errors."""
    for line, spec, inspection in parsed:
        try:
            plan.add(line, spec, inspection.result())
        except LineError as exc:
            plan.errors.append((line.place(), str(exc)))


def _ignore_progress(fraction: float) -> None:
    """The progress callback of a caller that asked for none."""


def _error_entry(line: Line | None, reason: str) -> dict:
    """An error as the job stores it: the line's (or row's) number, its file when the package names it, the reason."""
    if line is None:
        return {"line": None, "reason": reason}
    return {line.unit: line.number, **({"file": line.file} if line.file else {}), "reason": reason}


class _ImageBatch:
    """A batch's image bytes, then the run that checks them on the inspector's thread."""

    def __init__(self) -> None:
        self.images: list[bytes] = []
        self.run: Future[list[ImageInfo | ImageRejectedError]] | None = None


@dataclass(frozen=True)
class _Inspection:
    """One image's check: its place in a batch, and its name as an error gives it."""

    batch: _ImageBatch
    index: int
    name: str

    def result(self) -> ImageInfo:
        """Wait for the check; return what the image is, or raise LineError naming it when it was refused."""
        assert self.batch.run is not None, "the batch was never started"
        outcome = self.batch.run.result()[self.index]
        if isinstance(outcome, ImageRejectedError):
            raise LineError(f"image {self.name}: {outcome}")
        return outcome


class _Inspector:
    """Decodes a batch's images on a thread of its own while the caller parses the next batch's lines.

    Pillow lets go of the GIL while it decodes, so the two overlap: at 100k scenes the decoding is ~10 s of
    pass 1's ~22. The image bytes are read here, on the caller's thread (a zip is read by one thread at a
    time); a path already seen is read and decoded once.
    """

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-images")
        self._seen: dict[str, _Inspection] = {}  # package path -> its inspection
        self._batch = _ImageBatch()

    def __enter__(self) -> _Inspector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._executor.shutdown(cancel_futures=True)

    def inspect(self, package: Package, ref: str) -> _Inspection:
        """Read the image a line names and add it to the batch; raise LineError when it cannot be read."""
        is_data_uri = ref.startswith("data:")
        if not is_data_uri and ref in self._seen:
            return self._seen[ref]
        name = "(data: URI)" if is_data_uri else repr(ref)
        try:
            self._batch.images.append(package.read_image(ref, max_bytes=settings.REWARDLAB_MAX_IMAGE_BYTES))
        except ImageReadError as exc:
            raise LineError(f"image {name}: {exc}") from exc
        inspection = _Inspection(self._batch, len(self._batch.images) - 1, name)
        if not is_data_uri:
            self._seen[ref] = inspection
        return inspection

    def batch_end(self) -> None:
        """Start checking the batch's images on the thread; later images go to a new batch."""
        batch, self._batch = self._batch, _ImageBatch()
        images, batch.images = batch.images, []  # the run holds the bytes until it is done, nothing else
        batch.run = self._executor.submit(_images_inspect, images)


def _images_inspect(images: list[bytes]) -> list[ImageInfo | ImageRejectedError]:
    """Check each image; a refused one gives its error in its place, so one bad image names only its lines."""
    outcomes: list[ImageInfo | ImageRejectedError] = []
    for data in images:
        try:
            outcomes.append(
                inspect_image(
                    data,
                    max_pixels=settings.REWARDLAB_MAX_IMAGE_PIXELS,
                    max_bytes=settings.REWARDLAB_MAX_IMAGE_BYTES,
                )
            )
        except ImageRejectedError as exc:
            outcomes.append(exc)
    return outcomes


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
    """Write every row in one transaction; return how many images were new and how many reused.

    Rows go in by COPY with ids taken beforehand (`ids_reserve`), so a batch's responses and pairs point at
    its items without a round trip per row. Image files are saved on this thread: on a thread of their
    own, each file's system calls waited for the GIL behind the rows, and a 100k import took 80 s, not 51.
    """
    image_ids = _existing_images(plan.images)
    new = {sha: info for sha, info in plan.images.items() if sha not in image_ids}
    unsaved = dict(new)
    created_at = timezone.now()
    with transaction.atomic():
        image_ids.update(_image_rows_insert(new, created_at=created_at))
        for spooled in plan.batches():
            batch = plan.rows(spooled)
            _image_files_save(package, batch=batch, unsaved=unsaved)
            _rows_insert(campaign=campaign, job=job, batch=batch, image_ids=image_ids, created_at=created_at)
    return len(new), len(plan.images) - len(new)


def _image_files_save(package: Package, *, batch: list[_ItemRow], unsaved: dict[str, ImageInfo]) -> None:
    """Save the files of the batch's images that are in `unsaved`, and take them out of it.

    Files go to storage before the transaction commits: a file left by a rolled-back import is named by
    its content, so the next import of the same bytes finds it and uses it.
    """
    for row in batch:
        if (info := unsaved.pop(row.sha256, None)) is not None:
            data = package.read_image(row.image, max_bytes=settings.REWARDLAB_MAX_IMAGE_BYTES)
            _image_file_save(_image_name(row.sha256, info), data)


def _existing_images(images: Iterable[str]) -> dict[str, int]:
    """Map the SHA-256 of each image some earlier import stored to its row's id."""
    image_ids: dict[str, int] = {}
    for shas in _batches(images):
        image_ids.update(Image.objects.filter(sha256__in=shas).values_list("sha256", "pk"))
    return image_ids


def _image_name(sha: str, info: ImageInfo) -> str:
    return f"images/{sha[:2]}/{sha}.{info.ext}"


def _image_rows_insert(new: dict[str, ImageInfo], *, created_at: datetime) -> dict[str, int]:
    """Insert the rows of the new images; return their ids by SHA-256.

    An import running beside this one may insert the same image first; its row is taken instead of failing
    (ON CONFLICT … RETURNING gives the id either way). Rows go in SHA-256 order, so two such imports lock
    the same rows in the same order and never deadlock.
    """
    if not new:
        return {}
    rows = (
        (sha, _image_name(sha, info), info.width, info.height, info.format, info.size_bytes)
        for sha, info in sorted(new.items())
    )
    names = ", ".join(name for name, _ in IMAGE_COLUMNS)
    sql = (
        f"INSERT INTO {Image._meta.db_table} ({names}, created_at) SELECT {names}, %s FROM staged_rows "
        "ORDER BY sha256 ON CONFLICT (sha256) DO UPDATE SET sha256 = EXCLUDED.sha256 RETURNING sha256, id"
    )
    return dict(staged_select(columns=IMAGE_COLUMNS, rows=rows, sql=sql, params=[created_at]))


def _image_file_save(name: str, data: bytes) -> None:
    """Save an image under its content's name unless the file is there already (an earlier import's).

    In a local folder the file is made with open, write and close: `FileSystemStorage.save` adds two stats,
    a mkdir, a lock, an unlock and a chmod per file, 13 s more at 100k images on a slow disk. A new folder
    or a storage with no local path (`path` raises NotImplementedError) goes through the storage's save.
    """
    try:
        path = default_storage.path(name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    except (FileNotFoundError, NotImplementedError):
        if not default_storage.exists(name):
            saved = default_storage.save(name, ContentFile(data))
            if saved != name:
                # An import beside this one saved the same bytes under this name between the check and the save.
                default_storage.delete(saved)
        return
    try:
        with open(fd, "wb") as fp:
            if (mode := getattr(default_storage, "file_permissions_mode", None)) is not None:
                os.fchmod(fp.fileno(), mode)
            fp.write(data)
    except BaseException:
        os.unlink(path)  # a partial file would pass for the image in every later import
        raise


def _rows_insert(
    *,
    campaign: Campaign,
    job: ImportJob | None,
    batch: list[_ItemRow],
    image_ids: dict[str, int],
    created_at: datetime,
) -> None:
    """COPY a batch's items, responses, pairs and prior labels, each row pointing at ids taken for it."""
    item_ids = ids_reserve(Item, len(batch))
    job_id = job.pk if job else None
    rows_insert(
        Item,
        ITEM_COLUMNS,
        (
            (item_id, campaign.pk, row.external_id, image_ids[row.sha256], row.prompt, row.facts, row.meta, job_id,
             created_at)
            for item_id, row in zip(item_ids, batch, strict=True)
        ),
    )  # fmt: skip
    response_ids = iter(ids_reserve(Response, sum(len(row.responses) for row in batch)))
    responses = [{response[0]: next(response_ids) for response in row.responses} for row in batch]
    rows_insert(
        Response,
        RESPONSE_COLUMNS,
        (
            (ids[response_id], item_id, response_id, text, model)
            for item_id, ids, row in zip(item_ids, responses, batch, strict=True)
            for response_id, text, model in row.responses
        ),
    )
    pair_ids = iter(ids_reserve(Pair, sum(len(row.pairs) for row in batch)))
    pairs = [[next(pair_ids) for _ in row.pairs] for row in batch]
    pair_defaults = _defaults(Pair, PAIR_DEFAULTED)
    rows_insert(
        Pair,
        PAIR_COLUMNS + PAIR_DEFAULTED,
        (
            (pair_id, campaign.pk, item_id, ids[a], ids[b], gold, campaign.overlap, *pair_defaults)
            for item_id, ids, item_pairs, row in zip(item_ids, responses, pairs, batch, strict=True)
            for pair_id, (a, b, gold) in zip(item_pairs, row.pairs, strict=True)
        ),
    )
    rows_insert(
        PriorLabel,
        PRIOR_COLUMNS,
        (
            (item_pairs[pair], answer, strength, source)
            for item_pairs, row in zip(pairs, batch, strict=True)
            for pair, answer, strength, source in row.priors
        ),
    )


def _defaults(model: type[Model], columns: tuple[str, ...]) -> tuple:
    """The values the model gives these fields when a row leaves them out, prepared as an INSERT would be."""
    fields = [model._meta.get_field(column) for column in columns]
    return tuple(field.get_db_prep_save(field.get_default(), connection) for field in fields)


def import_job_create(
    *,
    campaign: Campaign,
    upload: UploadedFile,
    created_by: AbstractBaseUser,
    mapping: dict | str | None = None,
) -> ImportJob:
    """Save an uploaded package and queue its import; the request returns before any line is read.

    `mapping` is a column mapping (`rewardlab.package.mapping`) or the name of one saved for the campaign;
    the job keeps a copy and reads every line through it.
    """
    filename = upload_filename(upload)
    column_mapping = import_mapping_resolve(campaign=campaign, value=mapping)
    job = ImportJob(
        campaign=campaign, created_by=created_by, filename=filename, mapping=column_mapping and column_mapping.as_json()
    )
    with transaction.atomic():
        job.file.save(filename, upload, save=False)
        job.save()
        transaction.on_commit(lambda: job_send(job))
    return job


def upload_filename(upload: UploadedFile) -> str:
    """Return the name an upload is kept under; raise ApplicationError for one too big or not a package."""
    limit = settings.REWARDLAB_MAX_UPLOAD_BYTES
    if upload.size > limit:
        message = f"The file is {upload.size} bytes; the limit is {limit}."
        raise ApplicationError(message, extra={"fields": {"file": message}})
    filename = Path(upload.name or "").name
    if Path(filename).suffix.lower() not in PACKAGE_SUFFIXES:
        message = f"Expected a {', '.join(PACKAGE_SUFFIXES[:-1])} or {PACKAGE_SUFFIXES[-1]} file, got {filename!r}."
        raise ApplicationError(message, extra={"fields": {"file": message}})
    return filename[: ImportJob._meta.get_field("filename").max_length]


def import_job_run(*, job_id: int, worker: str = "") -> ImportJob | None:
    """Run an import job for this worker; None when it is not to be run (`jobs.job_taken`): a redelivered
    task does nothing. A job whose worker died is run again from the start: pass 2 is one transaction,
    so a run that dies wrote nothing."""
    with job_taken(ImportJob, job_id, worker=worker, errors=[]) as job:
        if job is None:
            return None
        try:
            summary = import_package(
                campaign=job.campaign,
                path=Path(job.file.path),
                job=job,
                on_progress=job_progress(job),
                mapping=job.mapping and ColumnMapping.from_json(job.mapping),
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
