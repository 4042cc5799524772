"""gunicorn settings of the web admin (docker-compose.ha.yml and the image's default command).

One worker process with threads: django-prometheus keeps its request metrics in the process, so a
single process makes every scrape of /metrics see all of them (several worker processes would each
answer with their own counters). The admin is light; threads cover concurrent operators and the
blocking database calls. Scale out with more containers behind a proxy, not more workers here.
"""
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = 1
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# A reconcile started from the admin waits up to 30 s for its lock; leave room for it.
timeout = 60
graceful_timeout = 30
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("QM_LOG_LEVEL", "info")
# Behind a TLS-terminating proxy on another host, set FORWARDED_ALLOW_IPS to its address.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# Temporary files of the workers' heartbeat in memory, not on the container's overlay disk.
worker_tmp_dir = "/dev/shm"
