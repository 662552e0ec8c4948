"""WSGI entry point (HTTP only; daphne serves asgi.py in every shipped setup)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobqueue_site.settings")
application = get_wsgi_application()
