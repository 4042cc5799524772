from django.contrib import admin

from notifications.models import Notification


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["created_at", "event", "level", "subject", "title", "status", "channel_outcomes", "attempts"]
    list_filter = ["status", "family", "level", "event"]
    search_fields = ["subject", "title", "text"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Notification._meta.fields]

    @admin.display(description="channels")
    def channel_outcomes(self, obj: Notification) -> str:
        return ", ".join(f"{c.get('channel')}: {c.get('outcome')}" for c in obj.channels or []) or "-"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
