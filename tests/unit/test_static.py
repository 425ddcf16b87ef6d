from django.core.management import call_command


def test_collected_modules_import_each_other_by_hashed_name(settings, tmp_path):
    """Behind nginx, pages load hashed files; chat-room.js must then import the hashed client too."""
    settings.STATIC_ROOT = tmp_path
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "project.storage.HashedStaticStorage"},
    }
    call_command("collectstatic", "--noinput", verbosity=0)
    js = tmp_path / "js"
    hashed_client = next(p.name for p in js.glob("ripple-socket.*.js"))
    page_module = next(js.glob("chat-room.*.js")).read_text()
    assert f'from "./{hashed_client}"' in page_module
