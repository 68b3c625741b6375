from django.contrib import admin

from annotate.models import (
    Annotation,
    Assignment,
    Campaign,
    ExportSnapshot,
    Image,
    ImportJob,
    Item,
    Membership,
    ModelRun,
    Pair,
    Worker,
)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "overlap", "gold_share", "created_at"]
    list_filter = ["status"]
    search_fields = ["name"]
    inlines = [MembershipInline]


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["external_id", "campaign", "created_at"]
    list_filter = ["campaign"]
    search_fields = ["external_id", "prompt"]
    raw_id_fields = ["image", "import_job"]


@admin.register(Pair)
class PairAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "campaign",
        "item",
        "status",
        "labels_count",
        "needed_labels",
        "priority",
        "gold_answer",
    ]
    list_filter = ["campaign", "status"]
    raw_id_fields = ["item", "a", "b"]


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    list_display = ["id", "pair", "annotator", "more_hallucinated", "strength", "shown_left", "created_at"]
    list_filter = ["more_hallucinated"]
    raw_id_fields = ["assignment", "pair", "annotator"]


@admin.register(ModelRun)
class ModelRunAdmin(admin.ModelAdmin):
    list_display = ["id", "campaign", "trigger", "status", "stage", "progress", "worker", "device", "finished_at"]
    list_filter = ["status", "trigger", "campaign"]
    readonly_fields = ["metrics", "config"]


@admin.register(ExportSnapshot)
class ExportSnapshotAdmin(admin.ModelAdmin):
    """Read-only: a snapshot is immutable once written (API.md); staff may look at one or delete it."""

    list_display = [
        "id",
        "campaign",
        "format",
        "container",
        "status",
        "rows",
        "size_bytes",
        "created_by",
        "finished_at",
    ]
    list_filter = ["status", "format", "container", "campaign"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_add_permission(self, request) -> bool:
        return False


admin.site.register([Image, ImportJob, Assignment, Worker])
