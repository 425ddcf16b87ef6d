from django.apps import AppConfig


class ChatConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "chat"
    verbose_name = "Ripple chat"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (connects the receivers)
