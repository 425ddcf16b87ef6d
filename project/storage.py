"""Static files storage for deployments where nginx serves collectstatic's output."""

from django.contrib.staticfiles.storage import ManifestStaticFilesStorage


class HashedStaticStorage(ManifestStaticFilesStorage):
    """Content-hashed names, also inside ES module imports (chat-room.js imports ripple-socket.js)."""

    support_js_module_import_aggregation = True
