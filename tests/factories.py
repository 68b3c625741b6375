"""Small builders for campaign content, so tests need not go through an import package."""

from __future__ import annotations

import hashlib
import io

from django.core.files.base import ContentFile
from PIL import Image as PILImage

from annotate.models import (
    Annotation,
    Assignment,
    Campaign,
    ExportSnapshot,
    Image,
    ImportJob,
    ImportUpload,
    Item,
    Membership,
    ModelRun,
    Pair,
    Response,
)


def png_bytes(colour: tuple[int, int, int] = (200, 30, 30), size: int = 16) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def image_stored(data: bytes, *, save: bool = True) -> Image:
    """Return the Image of PNG `data` as the import stores it (file named by SHA-256), reusing a stored one.

    With `save=False` the file is written but the row is not, for a caller that bulk-creates rows.
    """
    sha = hashlib.sha256(data).hexdigest()
    if save and (existing := Image.objects.filter(sha256=sha).first()):
        return existing
    with PILImage.open(io.BytesIO(data)) as picture:
        width, height = picture.size
    image = Image(sha256=sha, width=width, height=height, format="PNG", size_bytes=len(data))
    image.file.save(f"{sha[:2]}/{sha}.png", ContentFile(data), save=False)
    if save:
        image.save()
    return image


def make_image(colour: tuple[int, int, int] = (200, 30, 30)) -> Image:
    return image_stored(png_bytes(colour))


def make_pairs(
    campaign: Campaign,
    n: int = 3,
    *,
    gold: int = 0,
    prompt: str = "How many red balls?",
    texts: tuple[str, str] = ("Two red balls.", "Three red balls."),
    facts: dict | None = None,
) -> list[Pair]:
    """Create n items with one pair each; the first `gold` pairs are gold with `b` more hallucinated."""
    image = make_image()
    pairs = []
    for index in range(n):
        item = Item.objects.create(
            campaign=campaign, external_id=f"item-{index:05d}", image=image, prompt=prompt, facts=facts or {}
        )
        a = Response.objects.create(item=item, external_id="r0", text=texts[0], model="m0")
        b = Response.objects.create(item=item, external_id="r1", text=texts[1], model="m1")
        pairs.append(
            Pair.objects.create(
                campaign=campaign,
                item=item,
                a=a,
                b=b,
                needed_labels=campaign.overlap,
                gold_answer="b" if index < gold else "",
            )
        )
    return pairs


def url_ids(
    *,
    membership: Membership,
    job: ImportJob,
    upload: ImportUpload,
    run: ModelRun,
    snapshot: ExportSnapshot,
    assignment: Assignment,
    annotation: Annotation,
    image: Image,
) -> dict[str, int | str]:
    """Fill every id-taking URL kwarg of the site with an object of one campaign (the membership's)."""
    return {
        "campaign_id": membership.campaign_id,
        "membership_id": membership.pk,
        "job_id": job.pk,
        "upload_id": upload.pk,
        "run_id": run.pk,
        "snapshot_id": snapshot.pk,
        "export_id": snapshot.pk,
        "assignment_id": assignment.pk,
        "annotation_id": annotation.pk,
        "sha256": image.sha256,
    }
