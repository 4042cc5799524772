"""Settings for the test suite: the real settings with test-only defaults."""
import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production-use-0123456789")
os.environ.setdefault("QM_DEBUG", "0")
os.environ.setdefault("QM_SSL_REDIRECT", "0")
os.environ.setdefault("QM_INSTANCE_ID", "test-instance")

from quantmesh.settings import *  # noqa: E402,F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
