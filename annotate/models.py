"""The labeling domain's tables (DESIGN.md, "Data").

Models hold data and constraints only; every rule that changes them lives in `annotate.services`.
Labels are always stored in the canonical `a`/`b` order of the pair; the side shown on the left is
recorded per assignment so position bias can be measured.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q

from rewardlab import answers

# The largest id a row can have (bigint); a larger one names no row, and PostgreSQL would refuse to compare it.
MAX_ROW_ID = 2**63 - 1


class Choice(models.TextChoices):
    """Which response is more hallucinated (API.md, "Labels")."""

    A = answers.A, "A"
    B = answers.B, "B"
    BOTH = answers.BOTH, "Both equally"
    NEITHER = answers.NEITHER, "Neither"


class Side(models.TextChoices):
    A = answers.A, "A"
    B = answers.B, "B"


HALLUCINATION_TYPES = ("object", "attribute", "count", "relation", "text", "other")
DEFAULT_STRENGTH_LABELS = ("negligible", "slight", "clear", "significant")


class Campaign(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        CLOSED = "closed", "Closed"

    class Spans(models.TextChoices):
        """Whether labels mark hallucinated spans; `rewardlab_spans_errors` (migration 0014) enforces it."""

        OFF = "off", "Off: no spans"
        OPTIONAL = "optional", "Optional"
        REQUIRED = "required", "Required on the more hallucinated answer"

    name = models.CharField(max_length=200)
    instructions = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    overlap = models.PositiveSmallIntegerField(default=3, help_text="Human labels wanted per pair (k).")
    strength_scale = models.PositiveSmallIntegerField(default=4)
    strength_labels = models.JSONField(default=list, blank=True)
    show_facts = models.BooleanField(default=False)
    gold_share = models.FloatField(default=0.1, help_text="Share of assignments drawn from gold pairs.")
    min_gold_accuracy = models.FloatField(
        default=0.0, help_text="Annotators below this accuracy on gold pairs are paused (0 never pauses)."
    )
    gold_min_answered = models.PositiveSmallIntegerField(
        default=5, help_text="Gold pairs an annotator answers before their gold accuracy is judged."
    )
    # Off by default: a gold pair's answer, once shown, could be passed on to annotators yet to meet that pair.
    gold_feedback = models.BooleanField(
        default=False,
        help_text="Annotators see on their My work page which gold pairs they answered right, and the right answer.",
    )
    rationale_required = models.BooleanField(default=False)
    spans = models.CharField(max_length=10, choices=Spans.choices, default=Spans.OPTIONAL)
    lease_seconds = models.PositiveIntegerField(default=900)
    edit_window_minutes = models.PositiveIntegerField(
        default=30, help_text="How long after labeling a pair an annotator may change that label (0: never)."
    )
    retrain_every = models.PositiveIntegerField(default=200)
    max_extra_labels = models.PositiveSmallIntegerField(
        default=2, help_text="How many labels beyond the overlap a surfaced pair may ask for."
    )
    priority_weights = models.JSONField(
        default=dict, blank=True, help_text="Weights of the priority terms; missing ones take the defaults."
    )
    surface_thresholds = models.JSONField(
        default=dict, blank=True, help_text="When a pair is surfaced, per reason; missing ones take the defaults."
    )
    # The reward model whose scores pages, API and priorities use; it changes only when a run has succeeded.
    active_model = models.ForeignKey("ModelRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Human labels saved so far, counted in the submit transaction, and the count when a retrain was last asked.
    human_labels = models.PositiveIntegerField(default=0)
    labels_at_last_request = models.PositiveIntegerField(default=0)
    # Changes of a human label by its annotator so far; an edit is no new label (`services.annotations`).
    label_edits = models.PositiveIntegerField(default=0)
    # The consensus refresh (`services.quality`): when a label asked for one no worker has started yet, when
    # the last one started, and how many human labels and edits there were then (fewer than now: it is stale).
    consensus_requested_at = models.DateTimeField(null=True, blank=True)
    consensus_started_at = models.DateTimeField(null=True, blank=True)
    consensus_labels = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        LEAD = "lead", "Lead"
        ANNOTATOR = "annotator", "Annotator"
        RESEARCHER = "researcher", "Researcher"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=12, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    # An annotator paused from this campaign (failed gold, or by a lead) gets no new pairs; the reason is shown.
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_reason = models.TextField(blank=True)
    # Gold is judged on answers given since this moment: set when a lead resumes a member paused for gold.
    gold_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "user"], name="membership_one_role_per_campaign")]

    def __str__(self) -> str:
        return f"{self.user} as {self.role} in {self.campaign}"


class Image(models.Model):
    """An image stored once, named by the SHA-256 of its bytes, shared by every item that shows it."""

    sha256 = models.CharField(max_length=64, unique=True)
    file = models.FileField(upload_to="images/")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=10)
    size_bytes = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.sha256[:12]


class Item(models.Model):
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="items")
    external_id = models.CharField(max_length=200)
    image = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="items")
    prompt = models.TextField()
    facts = models.JSONField(default=dict, blank=True)
    meta = models.JSONField(default=dict, blank=True)
    import_job = models.ForeignKey("ImportJob", null=True, on_delete=models.SET_NULL, related_name="items")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "external_id"], name="item_external_id_unique")]

    def __str__(self) -> str:
        return self.external_id


class Response(models.Model):
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="responses")
    external_id = models.CharField(max_length=200)
    text = models.TextField()
    model = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["item", "external_id"], name="response_external_id_unique")]

    def __str__(self) -> str:
        return f"{self.item_id}/{self.external_id}"


class Pair(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Needs labels"
        COMPLETE = "complete", "Complete"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="pairs")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="pairs")
    a = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="+")
    b = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="+")
    gold_answer = models.CharField(max_length=8, choices=Choice.choices, blank=True)
    priority = models.FloatField(default=0.0)
    needed_labels = models.PositiveSmallIntegerField()
    labels_count = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    surfaced = models.JSONField(default=list, blank=True)
    # The human labels' consensus, weighted by annotator reliability (Dawid–Skene; majority while labels are
    # few): {"more_hallucinated", "strength", "agreement", "method"}; {} before any label.
    consensus = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "a", "b"], name="pair_unique_per_item"),
            models.CheckConstraint(condition=~Q(a=models.F("b")), name="pair_two_different_responses"),
        ]
        indexes = [
            # The assignment query: open pairs of one campaign, gold or not, highest priority first.
            models.Index(
                "campaign",
                "gold_answer",
                models.F("priority").desc(),
                "id",
                condition=Q(status="open"),
                name="pair_assignable_idx",
            ),
            # The gold pool: few rows among many, which the index above would make a scan of the campaign.
            models.Index(
                "campaign",
                models.F("priority").desc(),
                "id",
                condition=Q(status="open") & ~Q(gold_answer=""),
                name="pair_gold_assignable_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"pair {self.pk} of {self.item_id}"

    @property
    def is_gold(self) -> bool:
        return bool(self.gold_answer)


class PriorLabel(models.Model):
    """A label that came with the data (AI feedback, an older round): trains the model, never counts as human."""

    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="prior_labels")
    more_hallucinated = models.CharField(max_length=8, choices=Choice.choices)
    strength = models.PositiveSmallIntegerField(null=True, blank=True)
    source = models.CharField(max_length=100, blank=True)

    def __str__(self) -> str:
        return f"prior {self.more_hallucinated} on {self.pair_id}"


class Assignment(models.Model):
    """A lease of one pair to one annotator, with the side shown on the left drawn at random."""

    class Status(models.TextChoices):
        LEASED = "leased", "Leased"
        DONE = "done", "Done"
        SKIPPED = "skipped", "Skipped"

    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    left = models.CharField(max_length=1, choices=Side.choices)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.LEASED)
    leased_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # The backstop for "never the same pair twice to one annotator".
            models.UniqueConstraint(fields=["pair", "annotator"], name="assignment_once_per_annotator"),
        ]
        indexes = [
            models.Index(fields=["annotator", "status"], name="assignment_annotator_idx"),
            models.Index(fields=["pair", "expires_at"], condition=Q(status="leased"), name="assignment_live_lease_idx"),
        ]

    def __str__(self) -> str:
        return f"assignment {self.pk}: pair {self.pair_id} to {self.annotator_id}"


class Annotation(models.Model):
    """One human label; one per assignment, so a double submit can never make two.

    The row is always the label's latest version, which counts, consensus, gold and exports read; an edit
    by its annotator moves the version it replaces to `AnnotationVersion` (API.md, `PATCH /annotations/{id}/`).
    """

    assignment = models.OneToOneField(Assignment, on_delete=models.CASCADE, related_name="annotation")
    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="annotations")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="annotations")
    more_hallucinated = models.CharField(max_length=8, choices=Choice.choices)
    strength = models.PositiveSmallIntegerField(null=True, blank=True)
    hallucination_types = models.JSONField(default=list, blank=True)
    spans = models.JSONField(default=list, blank=True)
    rationale = models.TextField(blank=True)
    shown_left = models.CharField(max_length=1, choices=Side.choices)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # 1 as first given, one more per edit; a database default, since `rewardlab_submit` inserts the row itself.
    version = models.PositiveIntegerField(default=1, db_default=1)
    edited_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["pair", "created_at"], name="annotation_pair_idx")]

    def __str__(self) -> str:
        return f"{self.more_hallucinated}/{self.strength} on pair {self.pair_id}"

    def as_version(self, *, replaced_at: datetime | None = None) -> AnnotationVersion:
        """The label as it stands, as an (unsaved) version: what an edit keeps, and the last of the history."""
        return AnnotationVersion(
            annotation=self,
            number=self.version,
            more_hallucinated=self.more_hallucinated,
            strength=self.strength,
            hallucination_types=self.hallucination_types,
            spans=self.spans,
            rationale=self.rationale,
            created_at=self.edited_at or self.created_at,
            replaced_at=replaced_at,
        )


class AnnotationVersion(models.Model):
    """A version of a label that an edit replaced, kept with the time it was given: nothing is lost.

    Number 1 is the label as first given. The latest version is the annotation row itself, never copied here.
    """

    annotation = models.ForeignKey(Annotation, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    more_hallucinated = models.CharField(max_length=8, choices=Choice.choices)
    strength = models.PositiveSmallIntegerField(null=True, blank=True)
    hallucination_types = models.JSONField(default=list, blank=True)
    spans = models.JSONField(default=list, blank=True)
    rationale = models.TextField(blank=True)
    created_at = models.DateTimeField()  # when this version was given
    replaced_at = models.DateTimeField()

    class Meta:
        ordering = ["annotation", "number"]
        constraints = [
            # The backstop for "no lost version": two edits that both read version n cannot both store it.
            models.UniqueConstraint(fields=["annotation", "number"], name="annotation_version_unique"),
        ]

    def __str__(self) -> str:
        return f"version {self.number} of annotation {self.annotation_id}"


class Job(models.Model):
    """Work a Celery worker does for a row: queued, sent, taken, finished (`annotate.services.jobs` owns it).

    `attempts` counts the workers that took it; a row whose worker was lost goes back to the queue until
    it has had `services.jobs.MAX_ATTEMPTS`, so a job that kills every worker that tries it stops there.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    queue = models.CharField(max_length=10, blank=True)  # where its task was last sent
    worker = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)  # when the broker took its task
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at", "-id"]

    @property
    def is_terminal(self) -> bool:
        return self.status in {self.Status.SUCCEEDED, self.Status.FAILED}


class ImportJob(Job):
    """An uploaded package being imported; `errors` names each rejected line (API.md, "Import package")."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="import_jobs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    file = models.FileField(upload_to="imports/")
    filename = models.CharField(max_length=255)
    lines_total = models.PositiveIntegerField(default=0)
    items_created = models.PositiveIntegerField(default=0)
    pairs_created = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)
    # The column mapping the file is read through (rewardlab.package.mapping), a copy: a saved mapping
    # changed later does not change what this job did. Null: the file is in a layout the importer knows.
    mapping = models.JSONField(null=True, blank=True)
    # The mapping page's upload it came from, so a refused mapping is fixed without uploading the file again.
    upload = models.ForeignKey("ImportUpload", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")

    class Meta(Job.Meta):
        indexes = [
            # The re-send of jobs a broker outage left unsent.
            models.Index(fields=["status", "dispatched_at"], condition=Q(status="queued"), name="import_queued_idx"),
        ]

    def __str__(self) -> str:
        return f"import {self.pk} ({self.status})"


class ImportUpload(models.Model):
    """A file a lead uploaded to preview and map its columns; each import of it with a mapping is an ImportJob.

    It stays after an import, so a lead whose mapping was refused maps the same file again without uploading it.
    """

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="import_uploads")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    file = models.FileField(upload_to="imports/")
    filename = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"upload {self.pk} ({self.filename})"


class ImportMapping(models.Model):
    """A column mapping a lead saved under a name, to import the campaign's next files the same way."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="import_mappings")
    name = models.CharField(max_length=100)
    mapping = models.JSONField()  # as rewardlab.package.mapping.ColumnMapping.as_json writes it
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["campaign", "name"], name="import_mapping_name_unique")]

    def __str__(self) -> str:
        return self.name


class ModelRun(Job):
    """One retrain of a campaign's reward model, from request to scored pairs (DESIGN.md, "The loop").

    At most one run per campaign is queued or running (the constraint below). A run that fails, or whose
    worker dies, never becomes the campaign's `active_model`; its artifact and scores are pruned with time,
    its metrics stay for the learning curve.
    """

    class Stage(models.TextChoices):
        QUEUED = "queued", "Waiting for a worker"
        LOADING = "loading", "Loading labels"
        EMBEDDING = "embedding", "Embedding new images and texts"
        TRAINING = "training", "Training"
        SCORING = "scoring", "Scoring every pair"
        PRIORITIZING = "prioritizing", "Updating priorities"
        DONE = "done", "Done"

    class Trigger(models.TextChoices):
        LABELS = "labels", "New labels"
        LEAD = "lead", "Requested by a lead"
        IMPORT = "import", "Imported prior labels"

    ACTIVE_STATUSES = (Job.Status.QUEUED, Job.Status.RUNNING)

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="model_runs")
    stage = models.CharField(max_length=12, choices=Stage.choices, default=Stage.QUEUED)
    trigger = models.CharField(max_length=8, choices=Trigger.choices)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    labels_at_request = models.PositiveIntegerField(default=0)
    device = models.CharField(max_length=20, blank=True)
    config = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    artifact_path = models.CharField(max_length=500, blank=True)
    artifact_sha256 = models.CharField(max_length=64, blank=True)
    artifact_pruned = models.BooleanField(default=False)
    scored_at = models.DateTimeField(null=True, blank=True)

    class Meta(Job.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["campaign"],
                condition=Q(status__in=["queued", "running"]),
                name="model_run_one_active_per_campaign",
            )
        ]
        indexes = [models.Index(fields=["campaign", "-id"], name="model_run_campaign_idx")]

    def __str__(self) -> str:
        return f"model run {self.pk} ({self.status})"


class PairScore(models.Model):
    """A run's scores of one pair: the `score` fields of API.md."""

    run = models.ForeignKey(ModelRun, on_delete=models.CASCADE, related_name="scores")
    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="scores")
    p_a_better = models.FloatField()
    entropy = models.FloatField()
    mutual_info = models.FloatField()
    text_only_p_a_better = models.FloatField()
    shortcut_score = models.FloatField()
    noise_score = models.FloatField(null=True, blank=True)  # none for a pair with no label
    weight = models.FloatField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "pair"], name="pair_score_once_per_run")]

    def __str__(self) -> str:
        return f"scores of pair {self.pair_id} by run {self.run_id}"


class Worker(models.Model):
    """A Celery worker that said it is alive: where training is sent (GPU when one listens) and what leads see."""

    hostname = models.CharField(max_length=200, unique=True)
    queues = models.JSONField(default=list)
    device = models.CharField(max_length=20)
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.hostname} ({self.device})"


class ExportSnapshot(Job):
    """A dataset snapshot of a campaign in one export format (API.md, "Export formats"); immutable once written.

    Its content is fixed when it is asked for: `cutoff` records the newest annotation, prior label, pair and
    pair score then, `model_run` the active model, `campaign_settings` the settings the rows depend on; the
    worker reads only what those allow, writes the file once (temp file, then rename) and records its SHA-256.
    The file lives under MEDIA_ROOT/exports/ and is served only by the access-checked download endpoint.
    """

    class Format(models.TextChoices):
        REWARD = "reward", "reward (TRL RewardTrainer)"
        TRL_DPO = "trl-dpo", "trl-dpo (TRL DPOTrainer)"
        MDPO = "mdpo", "mdpo (with corrupted images)"
        LLAMAFACTORY = "llamafactory", "llamafactory (ShareGPT ranking)"
        LLAVA_RLHF = "llava-rlhf", "llava-rlhf"
        KTO = "kto", "kto (unpaired)"
        ANNOTATIONS = "annotations", "annotations (raw labels)"

    class Container(models.TextChoices):
        JSONL = "jsonl", "JSON Lines (a .zip with the images, or a bare .jsonl)"
        PARQUET = "parquet", "Parquet with embedded images (a Hugging Face dataset repository in a .zip)"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="exports")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    format = models.CharField(max_length=20, choices=Format.choices)
    container = models.CharField(max_length=10, choices=Container.choices, default=Container.JSONL)
    filters = models.JSONField(default=dict, blank=True)
    rows = models.PositiveIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    file = models.FileField(upload_to="exports/", blank=True)
    size_bytes = models.PositiveBigIntegerField(default=0)
    model_run = models.ForeignKey(ModelRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    campaign_settings = models.JSONField(default=dict, blank=True)
    cutoff = models.JSONField(default=dict, blank=True)
    code_version = models.CharField(max_length=100, blank=True)

    class Meta(Job.Meta):
        indexes = [
            # The re-send of snapshots a broker outage left unsent.
            models.Index(fields=["status", "dispatched_at"], condition=Q(status="queued"), name="export_queued_idx"),
        ]

    def __str__(self) -> str:
        return f"export {self.pk} ({self.format}, {self.status})"
