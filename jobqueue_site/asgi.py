"""ASGI entry point served by daphne: Django for HTTP, Channels for the dashboard websocket.

Websockets pass the Origin check first (``AllowedHostsOriginValidator``: the
Origin's host must be in ``ALLOWED_HOSTS``, so another site cannot ride a
staff member's session cookie), then get the session and user from the cookie
(``AuthMiddlewareStack``); the consumer itself admits only staff.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobqueue_site.settings")
django_asgi_app = get_asgi_application()

# These need Django set up first.
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from jobs.dashboard.routing import websocket_urlpatterns  # noqa: E402

# channels-stubs type URLRouter's routes as a private URLPattern subtype that Django's path() never
# returns, so every list of path()s needs this one ignore.
websocket = URLRouter(websocket_urlpatterns)  # type: ignore[arg-type]

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(websocket)),
    }
)
