# Ripple's application image: daphne serving HTTP and WebSockets on port 8000.
# Build: docker build -t ripple .   Run it with docker-compose.yml (PostgreSQL, Redis, nginx).
# Pinned by version (Python patch release and Debian release); a digest (@sha256:...) pins it
# fully, but none could be looked up where this was written. Upgrading: README.md.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=project.settings

WORKDIR /app

# The whole dependency tree, pinned with hashes (requirements.lock, made by `make lock` from
# requirements.txt): every package has a manylinux wheel for CPython 3.11, no compiler needed.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock

COPY . .

# Static files into /app/staticfiles (STATIC_ROOT) for nginx. The secret exists only for this
# command: settings refuse to load without one, and nothing here signs anything with it.
RUN DJANGO_SECRET_KEY=collectstatic-build-only-not-a-secret DJANGO_DEBUG=0 RIPPLE_SERVE_STATIC=0 \
    python manage.py collectstatic --noinput \
    && python -m compileall -q /app

# Code stays owned by root and read-only to the process that serves it.
RUN groupadd --system --gid 10001 ripple \
    && useradd --system --uid 10001 --gid ripple --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin ripple
USER ripple

EXPOSE 8000

# --proxy-headers: the client address (and scheme) from nginx's X-Forwarded-* headers.
# --ping-interval/--ping-timeout: protocol pings on idle sockets, alongside the app heartbeat.
# --websocket_timeout -1: no 24 h cap on a socket's life (daphne's default is 86400 s).
# --websocket-max-*-size: the same flags as project/serving.py (incoming frames over 64 KiB are dropped).
# --access-log /dev/null: daphne's own access log is plain NCSA text on stdout, outside logging;
# nginx logs every request, and sockets are logged as JSON on ripple.events (docs/deploy.md).
CMD ["python", "-m", "project.serve", "-b", "0.0.0.0", "-p", "8000", "--proxy-headers", \
     "--ping-interval", "20", "--ping-timeout", "30", "--websocket_timeout", "-1", \
     "--websocket-max-message-size", "4194304", "--websocket-max-frame-size", "65536", \
     "--access-log", "/dev/null", \
     "project.asgi:application"]
