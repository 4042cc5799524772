from django.contrib import admin

from locking.models import LockEvent


@admin.register(LockEvent)
class LockEventAdmin(admin.ModelAdmin):
    list_display = ["last_seen_at", "kind", "label", "key", "instance_id", "count", "token", "detail"]
    list_filter = ["kind", "label", "instance_id"]
    search_fields = ["key", "instance_id", "detail"]
    date_hierarchy = "last_seen_at"
    readonly_fields = [f.name for f in LockEvent._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
