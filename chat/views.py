import time

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import Resolver404, resolve
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_http_methods

from . import limits, protocol, selectors, services
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
        elif selectors.room_find(slug=slug) is not None:
            return redirect("chat:room", slug=slug)
        elif may_create:
            # Created here, so the name as typed ("Café Talk ☕") is kept as its title, within the
            # room creation limits a socket's subscribe has; over them, the socket decides.
            if _take_room_creation(request):
                services.room_get_or_create(slug=slug, title=_title_for(request.POST.get("room", ""), slug))
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


def _take_room_creation(request: HttpRequest) -> bool:
    """Take a room creation from the buckets a subscribe takes from (chat/throttle.py); False when empty."""
    now = time.monotonic()
    rate_per_s = settings.RIPPLE_ROOM_CREATE_PER_MIN / 60
    burst = settings.RIPPLE_ROOM_CREATE_BURST
    buckets = []
    if request.user.is_authenticated:
        buckets.append(limits.room_creations_per_member.get(f"u{request.user.pk}", rate_per_s, burst, now))
    address = request.META.get("REMOTE_ADDR")
    if address:
        buckets.append(limits.room_creations_per_address.get(address, rate_per_s, burst, now))
    if not buckets:
        return False
    return limits.take_all(tuple(buckets), now) == 0.0


def _title_for(typed: str, slug: str) -> str:
    """The room's title: the name as typed, unless it says no more than the slug."""
    title = " ".join(typed.split())[:120]
    return "" if title == slug else title


def _creators() -> str:
    """Who may create rooms, in words for the index page (RIPPLE_ROOM_CREATION)."""
    return {"anyone": "anyone", "users": "signed-in users", "staff": "staff"}[settings.RIPPLE_ROOM_CREATION]


@require_http_methods(["GET", "POST"])
def guest_name(request: HttpRequest) -> HttpResponse:
    """Ask for (GET) or keep (POST) a guest's display name in the session, then go back to ``next``."""
    data = request.POST if request.method == "POST" else request.GET
    next_url = data.get("next", "/")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = "/"
    context = {
        "next": next_url,
        "room_name": _room_name_for(next_url),
        "current": request.session.get(GUEST_NAME_KEY, ""),
    }
    if request.method == "GET":
        return render(request, "chat/name.html", context)
    try:
        name = check_guest_name(request.POST.get("name", ""))
    except GuestNameRefused as refused:
        return render(request, "chat/name.html", {**context, "error": refused.message}, status=400)
    request.session[GUEST_NAME_KEY] = name
    return redirect(next_url)


def _room_name_for(path: str) -> str:
    """The name of the room whose page ``path`` is (its title where it has one), or ''."""
    try:
        match = resolve(path.split("?", 1)[0])
    except Resolver404:
        return ""
    if match.view_name != "chat:room":
        return ""
    slug = match.kwargs.get("slug", "")
    found = Room.objects.filter(slug=slug).first()
    return str(found) if found is not None else slug


@require_GET
def room(request: HttpRequest, slug: str) -> HttpResponse:
    """The room page: the last messages rendered here, live updates from static/js."""
    if not protocol.ROOM_SLUG_RE.fullmatch(slug):
        # A name typed into the address bar (/rooms/General/): the room it slugifies to.
        canonical = slugify(slug)[:64].strip("-_")
        if canonical != slug and protocol.ROOM_SLUG_RE.fullmatch(canonical):
            return redirect("chat:room", slug=canonical)
        raise Http404("no such room")
    # This page never creates the room (the socket's subscribe does, within the same limits).
    found = Room.objects.filter(slug=slug).first()
    if found is None and not services.room_creation_allowed(user=request.user):
        raise Http404("no such room")
    identity = identity_from_request(request)
    room_name = str(found) if found is not None else slug
    if identity is None:
        return render(request, "chat/name.html", {"next": request.get_full_path(), "room_name": room_name})
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
            "room_name": room_name,
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
def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico on pages that name no icon (the admin's): the site's icon."""
    return redirect(static("favicon.svg"), permanent=True)


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """The process is alive."""
    return HttpResponse("ok\n", content_type="text/plain")
