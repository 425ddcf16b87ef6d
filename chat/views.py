from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import protocol, selectors, services
from .identity import GUEST_NAME_KEY, GuestNameRefused, check_guest_name, identity_from_request
from .models import Room


@require_http_methods(["GET", "POST"])
def index(request: HttpRequest) -> HttpResponse:
    """The rooms, and a form to open or create one."""
    error = ""
    may_create = services.room_creation_allowed(user=request.user)
    if request.method == "POST":
        slug = slugify(request.POST.get("room", ""))[:64].strip("-_")
        if not protocol.ROOM_SLUG_RE.fullmatch(slug):
            error = "A room name needs at least one letter or digit."
        elif may_create or selectors.room_find(slug=slug) is not None:
            return redirect("chat:room", slug=slug)
        else:
            error = f"There is no room {slug}, and only {_creators()} can create rooms."
    return render(
        request,
        "chat/index.html",
        {
            "rooms": selectors.room_list_active(
                user_id=request.user.pk if request.user.is_authenticated else None
            ),
            "identity": identity_from_request(request),
            "error": error,
            "may_create": may_create,
            "creators": _creators(),
        },
        status=400 if error else 200,
    )


def _creators() -> str:
    """Who may create rooms, in words for the index page (RIPPLE_ROOM_CREATION)."""
    return {"anyone": "anyone", "users": "signed-in users", "staff": "staff"}[settings.RIPPLE_ROOM_CREATION]


@require_POST
def guest_name(request: HttpRequest) -> HttpResponse:
    """Keep a guest's display name in the session."""
    next_url = request.POST.get("next", "/")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = "/"
    try:
        name = check_guest_name(request.POST.get("name", ""))
    except GuestNameRefused as refused:
        return render(request, "chat/name.html", {"next": next_url, "error": refused.message}, status=400)
    request.session[GUEST_NAME_KEY] = name
    return redirect(next_url)


@require_GET
def room(request: HttpRequest, slug: str) -> HttpResponse:
    """The room page: the last messages rendered here, live updates from static/js."""
    if not protocol.ROOM_SLUG_RE.fullmatch(slug):
        raise Http404("no such room")
    # This page never creates the room (the socket's subscribe does, within the same limits).
    found = Room.objects.filter(slug=slug).first()
    if found is None and not services.room_creation_allowed(user=request.user):
        raise Http404("no such room")
    identity = identity_from_request(request)
    if identity is None:
        return render(request, "chat/name.html", {"next": request.get_full_path()})
    if found is not None and not selectors.room_allows(room=found, user_id=identity.user_id):
        # The same answer the socket gives (error forbidden): no history, no member list.
        return render(request, "chat/forbidden.html", {"slug": slug, "identity": identity}, status=403)
    messages = selectors.message_list_recent(room=found, limit=50) if found else []
    return render(
        request,
        "chat/room.html",
        {
            "slug": slug,
            "room": found,
            "messages": messages,
            "last_seq": messages[-1].seq if messages else 0,
            "identity": identity,
        },
    )


@require_GET
def echo(request: HttpRequest) -> HttpResponse:
    """A WebSocket playground for the echo endpoint."""
    return render(request, "chat/echo.html")


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """The process is alive."""
    return HttpResponse("ok\n", content_type="text/plain")
