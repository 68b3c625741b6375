"""Import packages (API.md, "Import package"): a good file writes every row; any bad part writes none."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import struct
import zipfile
import zlib
from pathlib import Path
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.core.files.storage import Storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from kombu.exceptions import OperationalError
from PIL import Image as PILImage

from annotate.exceptions import ApplicationError, ImportRejectedError
from annotate.models import Image, ImportJob, Item, Pair, PriorLabel, Response
from annotate.services.campaigns import campaign_create
from annotate.services.imports import import_job_create, import_job_run, import_package

RED, BLUE = (255, 0, 0), (0, 0, 255)


def png(color: tuple[int, int, int] = RED, size: tuple[int, int] = (4, 4)) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge canvas: a decompression bomb that is never decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def item(external_id: str, image: str = "images/red.png", **fields: object) -> dict:
    line = {
        "external_id": external_id,
        "image": image,
        "prompt": "How many red balls are in the image?",
        "responses": [
            {"id": "r0", "text": "There are two red balls.", "model": "llava-7b"},
            {"id": "r1", "text": "There are three red balls.", "model": "llava-13b"},
        ],
    }
    line.update(fields)
    return {key: value for key, value in line.items() if value is not None}


def jsonl(lines: list[dict | str]) -> str:
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)


def make_zip(path: Path, lines: list[dict | str], files: dict[str, bytes] | None = None) -> Path:
    files = {"images/red.png": png(RED)} if files is None else files
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("items.jsonl", jsonl(lines))
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def make_jsonl(path: Path, lines: list[dict | str]) -> Path:
    path.write_text(jsonl(lines))
    return path


def stored_state() -> dict:
    media = Path(django_settings.MEDIA_ROOT) / "images"
    files = sorted(str(p) for p in media.rglob("*") if p.is_file()) if media.exists() else []
    models = (Item, Response, Pair, PriorLabel, Image)
    return {"files": files, **{model.__name__: model.objects.count() for model in models}}


def assert_rejected(campaign, path: Path, *, line: int | None, reason: str) -> list[dict]:
    """Import must fail naming `line` and `reason`, and leave every table and the image folder as it was."""
    before = stored_state()
    with pytest.raises(ImportRejectedError) as caught:
        import_package(campaign=campaign, path=path)
    errors = caught.value.errors
    assert any(error["line"] == line and reason in error["reason"] for error in errors), errors
    assert stored_state() == before
    return errors


@pytest.fixture
def good_zip(tmp_path):
    lines = [
        item("scene-1", "images/red.png", responses=[{"id": f"r{i}", "text": f"answer {i}"} for i in range(3)]),
        item(
            "scene-2",
            "images/red-copy.png",
            pairs=[["r1", "r0"]],
            facts={"caption": "Two red balls."},
            meta={"qtype": "counting"},
            prior=[{"pair": ["r0", "r1"], "more_hallucinated": "r0", "strength": 3, "source": "rlaif-v"}],
            gold=[{"pair": ["r0", "r1"], "more_hallucinated": "r1"}],
        ),
        item("scene-3", "./images/blue.png", prior=[{"pair": ["r0", "r1"], "more_hallucinated": "both"}]),
    ]
    files = {"images/red.png": png(RED), "images/red-copy.png": png(RED), "images/blue.png": png(BLUE)}
    return make_zip(tmp_path / "good.zip", lines, files)


def test_good_zip_creates_rows_and_stores_each_image_once(campaign, good_zip):
    progress: list[float] = []
    summary = import_package(campaign=campaign, path=good_zip, on_progress=progress.append)

    assert (summary.items, summary.pairs, summary.priors, summary.gold) == (3, 5, 2, 1)
    assert (summary.images_new, summary.images_reused) == (2, 0)
    assert progress == sorted(progress) and progress[-1] == 1.0
    items = {i.external_id: i for i in Item.objects.filter(campaign=campaign)}
    assert items["scene-1"].image_id == items["scene-2"].image_id != items["scene-3"].image_id
    assert len(stored_state()["files"]) == 2
    assert items["scene-2"].facts == {"caption": "Two red balls."} and items["scene-2"].meta == {"qtype": "counting"}
    default_pairs = Pair.objects.filter(item=items["scene-1"]).order_by("id")
    assert [(p.a.external_id, p.b.external_id) for p in default_pairs] == [("r0", "r1"), ("r0", "r2"), ("r1", "r2")]
    pair = Pair.objects.get(item=items["scene-2"])
    assert (pair.a.external_id, pair.b.external_id) == ("r1", "r0")
    assert pair.gold_answer == "a" and pair.needed_labels == campaign.overlap
    prior = PriorLabel.objects.get(pair=pair)
    assert (prior.more_hallucinated, prior.strength, prior.source) == ("b", 3, "rlaif-v")
    assert PriorLabel.objects.get(pair__item=items["scene-3"]).more_hallucinated == "both"
    image = Image.objects.get(pk=items["scene-1"].image_id)
    assert image.file.name == f"images/{image.sha256[:2]}/{image.sha256}.png"
    assert (image.width, image.height, image.format) == (4, 4, "PNG")


def test_second_campaign_reuses_stored_images(campaign, good_zip):
    import_package(campaign=campaign, path=good_zip)
    other = campaign_create(created_by=campaign.created_by, name="Second")
    files = stored_state()["files"]

    summary = import_package(campaign=other, path=good_zip)

    assert (summary.images_new, summary.images_reused) == (0, 2)
    assert Image.objects.count() == 2 and stored_state()["files"] == files
    assert Item.objects.filter(campaign=other).count() == 3


def test_bare_jsonl_with_data_uris_and_blank_lines(campaign, tmp_path):
    path = make_jsonl(
        tmp_path / "items.jsonl", [item("a", data_uri(png(RED))), "", "   ", item("b", data_uri(png(RED)))]
    )

    summary = import_package(campaign=campaign, path=path)

    assert (summary.items, summary.images_new) == (2, 1)


def test_zip_with_one_top_folder_is_read(campaign, tmp_path):
    path = tmp_path / "nested.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("export/items.jsonl", jsonl([item("a")]))
        archive.writestr("export/images/red.png", png(RED))

    assert import_package(campaign=campaign, path=path).items == 1


def make_folder(path: Path, lines: list[dict | str], files: dict[str, bytes] | None = None) -> Path:
    files = {"images/red.png": png(RED)} if files is None else files
    path.mkdir()
    (path / "items.jsonl").write_text(jsonl(lines))
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return path


def test_folder_package_is_read_and_symlinks_inside_it_are_followed(campaign, tmp_path):
    files = {"images/red.png": png(RED), "images/blue.png": png(BLUE)}
    path = make_folder(tmp_path / "package", [item("a"), item("b", "./images/blue.png"), item("c", "alias.png")], files)
    (path / "alias.png").symlink_to(path / "images" / "blue.png")

    summary = import_package(campaign=campaign, path=path)

    assert (summary.items, summary.images_new) == (3, 2)


REJECTED_FOLDER_IMAGES = {
    "missing image file": ("images/nope.png", "'images/nope.png': not in the folder"),
    "a folder, not a file": ("images", "'images': not in the folder"),
    "dotdot path to an existing file": ("../outside.png", "'..' segment"),
    "absolute path to an existing file": ("/outside.png", "is absolute"),
    "symlink leaving the folder": ("images/link.png", "resolves to a file outside the folder"),
}


@pytest.mark.parametrize("image, reason", REJECTED_FOLDER_IMAGES.values(), ids=REJECTED_FOLDER_IMAGES.keys())
def test_bad_image_path_rejects_the_whole_folder(campaign, tmp_path, image, reason):
    (tmp_path / "outside.png").write_bytes(png(RED))
    path = make_folder(tmp_path / "package", [item("good-first"), item("bad", image)])
    (path / "images" / "link.png").symlink_to(tmp_path / "outside.png")

    assert_rejected(campaign, path, line=2, reason=reason)


def test_folder_without_items_jsonl_is_rejected(campaign, tmp_path):
    path = tmp_path / "package"
    path.mkdir()

    assert_rejected(campaign, path, line=None, reason="the folder has no items.jsonl")


def _responses(*ids: str) -> list[dict]:
    return [{"id": response_id, "text": "t"} for response_id in ids]


# Each case's line number counts from its own first line; the test puts one good line before them.
REJECTED_LINES = {
    "bad json": ([item("a"), item("b"), '{"external_id": "c",'], 3, "not valid JSON"),
    "missing prompt": ([item("a", prompt=None)], 1, "missing required field 'prompt'"),
    "empty prompt": ([item("a", prompt="  ")], 1, "prompt: expected a non-empty string"),
    "unknown key": ([item("a", promt="typo")], 1, "unknown field 'promt'"),
    "missing image file": ([item("a", "images/nope.png")], 1, "'images/nope.png': not in the package"),
    "dotdot path": ([item("a", "../evil.png")], 1, "'..' segment"),
    "absolute path": ([item("a", "/etc/passwd")], 1, "is absolute"),
    "backslash path": ([item("a", "images\\red.png")], 1, "backslash"),
    "repeated external_id, another prompt": (
        [item("a"), item("a", prompt="Which ball is red?")],
        2,
        "external_id 'a': line 3 has another prompt than line 2",
    ),
    "one response": ([item("a", responses=_responses("r0"))], 1, "at least 2 responses"),
    "duplicate response id": ([item("a", responses=_responses("r0", "r0"))], 1, "'r0' is used by another"),
    "unknown id in pairs": ([item("a", pairs=[["r0", "r9"]])], 1, "pairs[0]: unknown response id 'r9'"),
    "duplicate pair": ([item("a", pairs=[["r0", "r1"], ["r1", "r0"]])], 1, "listed twice"),
    "unknown id in prior": (
        [item("a", prior=[{"pair": ["r0", "r9"], "more_hallucinated": "r0"}])],
        1,
        "prior[0].pair: unknown response id 'r9'",
    ),
    "unknown answer in prior": (
        [item("a", prior=[{"pair": ["r0", "r1"], "more_hallucinated": "r9"}])],
        1,
        "prior[0].more_hallucinated: expected 'r0', 'r1', 'both' or 'neither'",
    ),
    "prior strength off the scale": (
        [item("a", prior=[{"pair": ["r0", "r1"], "more_hallucinated": "r0", "strength": 5}])],
        1,
        "expected an integer from 1 to 4",
    ),
    "unknown id in gold": (
        [item("a", gold=[{"pair": ["r0", "r1"], "more_hallucinated": "r7"}])],
        1,
        "gold[0].more_hallucinated",
    ),
    "gold pair not in pairs": (
        [
            item(
                "a",
                responses=_responses("r0", "r1", "r2"),
                pairs=[["r0", "r1"]],
                gold=[{"pair": ["r0", "r2"], "more_hallucinated": "r0"}],
            )
        ],
        1,
        "is not one of this item's pairs",
    ),
    "NaN in facts": (['{"external_id": "a", "facts": {"x": NaN}}'], 1, "NaN is not a JSON value"),
}


@pytest.mark.parametrize("lines, line, reason", REJECTED_LINES.values(), ids=REJECTED_LINES.keys())
def test_bad_line_rejects_the_whole_zip(campaign, tmp_path, lines, line, reason):
    path = make_zip(tmp_path / "bad.zip", [item("good-first"), *lines])

    assert_rejected(campaign, path, line=line + 1, reason=reason)


REJECTED_IMAGES = {
    "bytes that are not an image": (b"hello, not a picture", "not an image in one of the formats"),
    "a truncated png": (png(RED, (64, 64))[:60], "image 'images/red.png': cannot be decoded"),
    "a header claiming 10^10 pixels": (png_claiming(100_000, 100_000), "too many pixels"),
}


@pytest.mark.parametrize("data, reason", REJECTED_IMAGES.values(), ids=REJECTED_IMAGES.keys())
def test_bad_image_rejects_the_whole_zip(campaign, tmp_path, data, reason):
    files = {"images/red.png": data, "images/ok.png": png(BLUE)}
    path = make_zip(tmp_path / "bad.zip", [item("ok", "images/ok.png"), item("bad")], files)

    assert_rejected(campaign, path, line=2, reason=reason)


def test_image_over_the_pixel_limit_is_refused_before_decoding(campaign, tmp_path, settings):
    settings.REWARDLAB_MAX_IMAGE_PIXELS = 10
    path = make_zip(tmp_path / "big.zip", [item("a")])

    assert_rejected(campaign, path, line=1, reason="4x4 = 16 pixels; the limit is 10")


def test_image_over_the_byte_limit_is_refused_unread(campaign, tmp_path, settings):
    settings.REWARDLAB_MAX_IMAGE_BYTES = 20
    path = make_zip(tmp_path / "big.zip", [item("a")])

    assert_rejected(campaign, path, line=1, reason="bytes; the limit is 20")


def test_unsafe_zip_member_rejects_the_package_even_if_unused(campaign, tmp_path):
    path = make_zip(tmp_path / "evil.zip", [item("a")], {"images/red.png": png(RED), "../x": b"owned"})

    assert_rejected(campaign, path, line=None, reason="unsafe zip member: '../x'")


def test_zip_without_items_jsonl_is_rejected(campaign, tmp_path):
    path = tmp_path / "empty.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("images/red.png", png(RED))

    assert_rejected(campaign, path, line=None, reason="no items.jsonl")


def test_bare_jsonl_needs_data_uris(campaign, tmp_path):
    path = make_jsonl(tmp_path / "items.jsonl", [item("a", "images/red.png")])

    assert_rejected(campaign, path, line=1, reason="give the image as a data: URI")


def test_line_over_one_mebibyte_is_refused(campaign, tmp_path):
    path = make_jsonl(tmp_path / "items.jsonl", [item("a", data_uri(png(RED))), item("b", prompt="x" * 1_100_000)])

    assert_rejected(campaign, path, line=2, reason="longer than 1048576 bytes")


def test_reimporting_an_external_id_is_an_error_not_a_duplicate(campaign, good_zip, tmp_path):
    import_package(campaign=campaign, path=good_zip)
    again = make_zip(tmp_path / "again.zip", [item("new-one"), item("scene-2")])

    assert_rejected(campaign, again, line=2, reason="'scene-2' already exists in campaign")


def test_every_bad_line_is_listed(campaign, tmp_path):
    path = make_zip(tmp_path / "bad.zip", [item("a"), "nope", item("c", prompt=None), item("d")])

    errors = assert_rejected(campaign, path, line=2, reason="not valid JSON")

    assert [error["line"] for error in errors] == [2, 3]


def _upload(path: Path) -> SimpleUploadedFile:
    return SimpleUploadedFile(path.name, path.read_bytes())


def test_import_job_is_queued_on_commit_and_succeeds(campaign, good_zip, django_capture_on_commit_callbacks):
    with mock.patch("annotate.services.jobs.app.send_task") as send:
        with django_capture_on_commit_callbacks(execute=True):
            job = import_job_create(campaign=campaign, upload=_upload(good_zip), created_by=campaign.created_by)
    send.assert_called_once_with("workers.tasks.import_job_run", (job.pk,), queue="cpu")
    assert job.status == ImportJob.Status.QUEUED and job.filename == "good.zip"

    job = import_job_run(job_id=job.pk)

    assert job.status == ImportJob.Status.SUCCEEDED and job.progress == 1.0 and job.finished_at
    assert (job.items_created, job.pairs_created, job.lines_total, job.errors) == (3, 5, 3, [])
    assert set(Item.objects.filter(campaign=campaign).values_list("import_job", flat=True)) == {job.pk}
    assert import_job_run(job_id=job.pk) is None, "a redelivered task leaves a finished job as it is"
    assert Item.objects.count() == 3


def test_import_job_fails_with_every_error_and_writes_nothing(campaign, tmp_path):
    path = make_zip(tmp_path / "bad.zip", [item("a"), item("b", "../evil.png")])
    with mock.patch("annotate.services.jobs.app.send_task"):
        job = import_job_create(campaign=campaign, upload=_upload(path), created_by=campaign.created_by)

    job = import_job_run(job_id=job.pk)

    assert job.status == ImportJob.Status.FAILED and job.finished_at
    assert job.errors == [{"line": 2, "reason": "image '../evil.png': unsafe path: '../evil.png' has a '..' segment"}]
    assert Item.objects.count() == 0


def test_import_job_marks_failed_and_reraises_an_unexpected_error(campaign, tmp_path):
    path = make_jsonl(tmp_path / "items.jsonl", [item("a", data_uri(png()))])
    with mock.patch("annotate.services.jobs.app.send_task"):
        job = import_job_create(campaign=campaign, upload=_upload(path), created_by=campaign.created_by)
    Path(job.file.path).unlink()

    with pytest.raises(FileNotFoundError):
        import_job_run(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED
    assert len(job.errors) == 1 and "FileNotFoundError" in job.errors[0]["reason"]


def test_broker_down_leaves_the_job_queued(campaign, good_zip, django_capture_on_commit_callbacks):
    with mock.patch("annotate.services.jobs.app.send_task", side_effect=OperationalError("no broker")) as send:
        with django_capture_on_commit_callbacks(execute=True):
            job = import_job_create(campaign=campaign, upload=_upload(good_zip), created_by=campaign.created_by)

    send.assert_called_once()
    assert ImportJob.objects.get(pk=job.pk).status == ImportJob.Status.QUEUED


@pytest.mark.parametrize(
    "name, size_limit, message",
    [
        ("pkg.zip", 10, "the limit is 10"),
        ("pkg.csv", None, "Expected a .zip, .jsonl, .json or .parquet file, got 'pkg.csv'"),
    ],
)
def test_upload_is_refused_when_too_big_or_not_a_package(campaign, settings, name, size_limit, message):
    if size_limit is not None:
        settings.REWARDLAB_MAX_UPLOAD_BYTES = size_limit
    upload = SimpleUploadedFile(name, b"x" * 100)

    with pytest.raises(ApplicationError, match=message):
        import_job_create(campaign=campaign, upload=upload, created_by=campaign.created_by)
    assert ImportJob.objects.count() == 0


def test_command_imports_and_prints_a_summary(campaign, good_zip):
    out = io.StringIO()

    call_command("import_package", str(campaign.pk), str(good_zip), stdout=out)

    assert "Imported 3 items, 5 pairs (1 gold), 2 prior labels" in out.getvalue()
    assert Item.objects.filter(campaign=campaign).count() == 3


def test_command_fails_naming_each_line(campaign, tmp_path):
    path = make_zip(tmp_path / "bad.zip", [item("a"), item("b"), "{oops", item("d", responses=[])])
    err = io.StringIO()

    with pytest.raises(CommandError, match="2 error"):
        call_command("import_package", str(campaign.pk), str(path), stderr=err, verbosity=0)

    lines = err.getvalue().splitlines()
    assert lines[0].startswith("line 3: not valid JSON") and lines[1].startswith("line 4: responses")
    assert Item.objects.count() == 0


def test_rows_span_batches_in_file_order_and_later_inserts_take_new_ids(campaign, tmp_path, monkeypatch):
    monkeypatch.setattr("annotate.services.imports.BATCH_SIZE", 2)
    lines = [
        item(
            f"s{n}",
            "images/red.png" if n % 2 else "images/blue.png",
            prior=[{"pair": ["r0", "r1"], "more_hallucinated": "r1"}],
        )
        for n in range(5)
    ]
    path = make_zip(tmp_path / "five.zip", lines, {"images/red.png": png(RED), "images/blue.png": png(BLUE)})

    summary = import_package(campaign=campaign, path=path)

    assert (summary.items, summary.pairs, summary.priors, summary.images_new) == (5, 5, 5, 2)
    items = list(Item.objects.filter(campaign=campaign).order_by("id"))
    assert [i.external_id for i in items] == [f"s{n}" for n in range(5)]
    for row in items:
        pair = Pair.objects.get(item=row)
        assert (pair.a.item_id, pair.b.item_id, pair.a.external_id, pair.b.external_id) == (row.pk, row.pk, "r0", "r1")
        assert (pair.status, pair.priority, pair.labels_count, pair.surfaced, pair.consensus) == (
            "open",
            0.0,
            0,
            [],
            {},
        )
        assert PriorLabel.objects.get(pair=pair).more_hallucinated == "b"
    # The sequences moved past every id COPY wrote: the ORM's next rows do not collide with them.
    later = Item.objects.create(campaign=campaign, external_id="later", image=items[0].image)
    response = Response.objects.create(item=later, external_id="r0", text="t")
    other = Response.objects.create(item=later, external_id="r1", text="t")
    pair = Pair.objects.create(campaign=campaign, item=later, a=response, b=other, needed_labels=1)
    prior = PriorLabel.objects.create(pair=pair, more_hallucinated="a")
    assert later.pk > items[-1].pk
    assert response.pk > Response.objects.exclude(item=later).order_by("-id")[0].pk
    assert pair.pk > Pair.objects.exclude(item=later).order_by("-id")[0].pk
    assert prior.pk > PriorLabel.objects.exclude(pair=pair).order_by("-id")[0].pk


def image_path(data: bytes, *, folder_made: bool = True) -> Path:
    """Where an image's file goes; its folder made, so the import takes its open-write-close path, not save()."""
    sha = hashlib.sha256(data).hexdigest()
    path = Path(django_settings.MEDIA_ROOT) / "images" / sha[:2] / f"{sha}.png"
    if folder_made:
        path.parent.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.parametrize("folder_made", [True, False], ids=["folder there", "folder new"])
def test_image_rows_and_files_hold_what_the_package_held(campaign, good_zip, settings, folder_made):
    settings.FILE_UPLOAD_PERMISSIONS = 0o640
    paths = {image_path(png(color), folder_made=folder_made) for color in (RED, BLUE)}

    import_package(campaign=campaign, path=good_zip)

    assert {Path(image.file.path) for image in Image.objects.all()} == paths
    for image in Image.objects.all():
        data = Path(image.file.path).read_bytes()
        assert image.size_bytes == len(data) and image.sha256 == hashlib.sha256(data).hexdigest()
        assert Path(image.file.path).stat().st_mode & 0o777 == 0o640


def test_an_image_file_already_there_is_kept(campaign, good_zip):
    """A file under an image's name is taken as that image (the name is its bytes' hash), never written over."""
    left = image_path(png(RED))
    left.write_bytes(b"left before")

    import_package(campaign=campaign, path=good_zip)

    assert Image.objects.get(sha256=hashlib.sha256(png(RED)).hexdigest()).file.path == str(left)
    assert left.read_bytes() == b"left before" and len(stored_state()["files"]) == 2


def test_a_file_that_fails_midway_is_removed_and_nothing_is_written(campaign, good_zip):
    for color in (RED, BLUE):
        image_path(png(color))
    before = stored_state()

    with mock.patch("os.fchmod", side_effect=OSError(28, "No space left on device")), pytest.raises(OSError):
        import_package(campaign=campaign, path=good_zip)

    assert stored_state() == before


class MemoryStorage(Storage):
    """A storage with no local paths (`path` raises NotImplementedError), as a bucket's would be."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def _save(self, name: str, content) -> str:
        self.files[name] = content.read()
        return name

    def exists(self, name: str) -> bool:
        return name in self.files


def test_a_storage_without_local_paths_gets_its_own_save(campaign, good_zip):
    storage = MemoryStorage()
    with mock.patch("annotate.services.imports.default_storage", storage):
        import_package(campaign=campaign, path=good_zip)

    stored = {name: hashlib.sha256(data).hexdigest() for name, data in storage.files.items()}
    assert stored == {image.file.name: image.sha256 for image in Image.objects.all()} and len(stored) == 2
    assert stored_state()["files"] == []


def test_an_external_id_added_while_the_rows_are_written_rejects_the_import(campaign, good_zip):
    """Pass 1 found no clash; an import beside this one then added scene-3: the COPY's unique error rejects it."""
    import_package(campaign=campaign, path=make_zip(Path(good_zip).parent / "one.zip", [item("scene-3")]))
    before = stored_state()

    with mock.patch("annotate.services.imports._existing_ids", return_value=[]):
        with pytest.raises(ImportRejectedError) as caught:
            import_package(campaign=campaign, path=good_zip)

    assert [error["line"] for error in caught.value.errors] == [None]
    assert "another import added some of these external_ids" in caught.value.errors[0]["reason"]
    # No row; image files saved before the error may stay, named by their bytes, for the next import to use.
    assert {**stored_state(), "files": []} == {**before, "files": []}


def test_images_checked_a_batch_behind_name_their_lines(campaign, tmp_path, monkeypatch):
    """Images are decoded a batch behind the parsing: a bad one shared across batches names each of its lines."""
    monkeypatch.setattr("annotate.services.imports.BATCH_SIZE", 2)
    files = {"images/red.png": png(RED), "images/blue.png": png(BLUE), "images/bad.png": b"not a picture"}
    lines = [
        item("a"),
        item("b", "images/blue.png"),
        item("c", "images/bad.png"),
        item("d"),
        item("e", "images/bad.png"),
    ]
    path = make_zip(tmp_path / "shared.zip", lines, files)

    errors = assert_rejected(campaign, path, line=3, reason="image 'images/bad.png': not an image")

    assert [(error["line"], error["reason"]) for error in errors] == [
        (3, errors[0]["reason"]),
        (5, errors[0]["reason"]),
    ]
    good = make_zip(tmp_path / "good.zip", [line for line in lines if line["image"] != "images/bad.png"], files)
    summary = import_package(campaign=campaign, path=good)
    assert (summary.items, summary.images_new) == (3, 2)
