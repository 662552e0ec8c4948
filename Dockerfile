# One image for every jobqueue process (web, worker, scheduler, migrate); docker-compose.yml
# picks the command. Production settings: DJANGO_DEBUG=0 and a real DJANGO_SECRET_KEY at run time.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first so code changes reuse this layer: exactly the releases pinned in requirements.lock,
# each checked against its hash (the lock is made from requirements.txt by `make lock`).
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock

# Only what runs in production (no .venv, .local or tests). Add new apps here as well: the
# collectstatic below imports every INSTALLED_APP, so a missing one fails the build.
COPY manage.py ./
COPY jobqueue_site/ jobqueue_site/
COPY jobs/ jobs/
COPY workers/ workers/
COPY scheduling/ scheduling/
COPY templates/ templates/

# Hashed, compressed static files for whitenoise. The secret is a build-time dummy: settings
# refuse to load without one when DEBUG is off, and nothing signed at build time is kept.
RUN DJANGO_DEBUG=0 DJANGO_SECRET_KEY=build-time-dummy-not-used-at-runtime \
    python manage.py collectstatic --noinput --verbosity 0

RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin jobqueue
USER jobqueue

EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "jobqueue_site.asgi:application"]
