"""Create (once) and print the demo admin login used by `make run`."""
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the local demo superuser (first run) and print its login."

    def handle(self, *args, **options):
        User = get_user_model()
        login_file = Path(settings.VAR_DIR) / "demo-login.txt"
        if not User.objects.filter(username="admin").exists():
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser("admin", "admin@localhost", password)
            login_file.parent.mkdir(parents=True, exist_ok=True)
            login_file.write_text(f"admin {password}\n")
            login_file.chmod(0o600)
        if login_file.exists():
            user, password = login_file.read_text().split()
            self.stdout.write(f"Admin: http://127.0.0.1:8000/admin/  login: {user}  password: {password}")
        else:
            self.stdout.write("Admin: http://127.0.0.1:8000/admin/  (user 'admin' existed before; password unchanged)")
