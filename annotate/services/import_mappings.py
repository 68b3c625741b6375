"""The column-mapping step of an import (API.md, "Import package"): upload, preview, map, import, reuse.

A file in no layout the importer knows is uploaded once (`ImportUpload`), its first rows are previewed, and
the lead maps its columns; the import job then reads every line through that mapping
(`rewardlab.package.mapping`), so it is validated on the whole file before anything is written, all or
nothing as any import. A mapping saved under a name (`ImportMapping`) is picked for the campaign's next file,
on the page or as `mapping` in `POST /api/v1/campaigns/{id}/imports/`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from annotate.exceptions import ApplicationError, NotFoundError
from annotate.models import Campaign, ImportJob, ImportMapping, ImportUpload
from annotate.services.jobs import job_send
from rewardlab.package.layouts import ItemSpecParser
from rewardlab.package.lines import LineError
from rewardlab.package.mapping import ColumnMapping, MappingError, Preview, preview
from rewardlab.package.package import Line, PackageError, open_package


@dataclass(frozen=True)
class UploadPreview:
    """What the mapping page shows of a file: its first rows, the layout they are in if any, or why it cannot
    be read."""

    preview: Preview
    layout: str | None = None
    error: str = ""


def import_mapping_resolve(*, campaign: Campaign, value: dict | str | None) -> ColumnMapping | None:
    """Return the mapping a request gives: a JSON object, or the name of a mapping saved for the campaign.

    Raise ApplicationError naming the field at fault (`mapping.prompt`) for a mapping that is not valid.
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = _saved(campaign, value).mapping
    try:
        return ColumnMapping.from_json(value)
    except MappingError as exc:
        field = "mapping" if exc.field == "mapping" else f"mapping.{exc.field}"
        message = f"The column mapping is not valid: {exc}"
        raise ApplicationError(message, extra={"fields": {field: exc.message}}) from exc


def _saved(campaign: Campaign, name: str) -> ImportMapping:
    saved = import_mapping_saved(campaign=campaign, name=name)
    if saved is None:
        names = ", ".join(repr(name) for name in import_mapping_names(campaign=campaign)) or "none"
        message = f"No saved mapping {name!r} in campaign {campaign.pk}; saved mappings: {names}."
        raise ApplicationError(message, extra={"fields": {"mapping": message}})
    return saved


def import_mapping_names(*, campaign: Campaign) -> list[str]:
    """Return the names of the mappings saved for the campaign, in name order."""
    return list(campaign.import_mappings.values_list("name", flat=True))


def import_mapping_saved(*, campaign: Campaign, name: str) -> ImportMapping | None:
    """Return the mapping saved under `name` for the campaign, or None (an empty name included)."""
    return campaign.import_mappings.filter(name=name).first() if name else None


def import_mapping_save(
    *, campaign: Campaign, name: str, mapping: ColumnMapping, created_by: AbstractBaseUser
) -> ImportMapping:
    """Save a mapping under a name for the campaign; a name already saved takes the new mapping."""
    saved = campaign.import_mappings.filter(name=name).first() or ImportMapping(campaign=campaign, name=name)
    saved.mapping = mapping.as_json()
    saved.created_by = created_by
    saved.full_clean(validate_constraints=False)  # the name's length; its uniqueness is the lookup above
    saved.save()
    return saved


def import_upload_create(*, campaign: Campaign, upload: UploadedFile, created_by: AbstractBaseUser) -> ImportUpload:
    """Keep an uploaded file to preview and map it; nothing is imported yet."""
    from annotate.services.imports import upload_filename  # imports resolves mappings through this module

    filename = upload_filename(upload)
    staged = ImportUpload(campaign=campaign, created_by=created_by, filename=filename)
    staged.file.save(filename, upload, save=False)
    staged.save()
    return staged


def import_upload_for(*, campaign: Campaign, upload_id: int) -> ImportUpload:
    """Return an upload of the campaign; one of another campaign answers like a missing id."""
    upload = campaign.import_uploads.filter(pk=upload_id).first()
    if upload is None:
        raise NotFoundError(f"No upload {upload_id} in campaign {campaign.pk}.")
    return upload


def import_upload_preview(*, upload: ImportUpload) -> UploadPreview:
    """Read the first rows of an upload, through the package's lines, so every container previews alike."""
    try:
        with open_package(Path(upload.file.path)) as package:
            shown = preview(package.lines())
            return UploadPreview(shown, layout=_layout(package.lines(), strength_scale=upload.campaign.strength_scale))
    except (PackageError, OSError) as exc:
        return UploadPreview(Preview(columns=(), rows=()), error=f"The file cannot be read: {exc}")


def _layout(lines: Iterable[Line], *, strength_scale: int) -> str | None:
    """Name the known layout the first line is in, or None: the lead needs no mapping for a known one."""
    parse = ItemSpecParser(strength_scale=strength_scale)
    for line in lines:
        try:
            parse(line.data)
        except LineError:
            pass
        return parse.layout.name if parse.layout else None
    return None


def import_job_from_upload(
    *,
    upload: ImportUpload,
    mapping: dict | str,
    created_by: AbstractBaseUser,
    save_as: str = "",
) -> ImportJob:
    """Queue the import of an upload through a mapping; with `save_as`, also save the mapping under that name."""
    campaign = upload.campaign
    column_mapping = import_mapping_resolve(campaign=campaign, value=mapping)
    job = ImportJob(
        campaign=campaign,
        created_by=created_by,
        filename=upload.filename,
        mapping=column_mapping.as_json(),
        upload=upload,
    )
    job.file.name = upload.file.name  # the upload's file, read and never changed: one copy for both
    with transaction.atomic():
        if save_as:
            import_mapping_save(campaign=campaign, name=save_as, mapping=column_mapping, created_by=created_by)
        job.save()
        transaction.on_commit(lambda: job_send(job))
    return job
