"""Forms of the moderation admin: the room form and the intermediate pages of room actions."""

from __future__ import annotations

from django import forms
from django.conf import settings

from . import protocol, services
from .models import Room

# Shown to the room's subscribers in the ``room_closed`` frame.
MAX_CLOSE_REASON_CHARS = 200


class RoomForm(forms.ModelForm):
    """A room added by hand: its slug must be one the chat protocol accepts."""

    class Meta:
        model = Room
        fields = ["slug", "title", "private"]

    def clean_slug(self) -> str:
        slug = self.cleaned_data["slug"]
        if not protocol.ROOM_SLUG_RE.fullmatch(slug):
            raise forms.ValidationError(
                "Use 1-64 of a-z, 0-9, '-' and '_', starting with a letter or digit.", code="invalid"
            )
        return slug


class AnnouncementForm(forms.Form):
    """The body of an announcement, held to the same rules as a chat message's body."""

    body = forms.CharField(label="Announcement", widget=forms.Textarea(attrs={"rows": 5, "cols": 80}))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        max_body_chars = settings.RIPPLE_MAX_BODY_CHARS
        field = self.fields["body"]
        field.widget.attrs["maxlength"] = str(max_body_chars)
        field.help_text = f"Plain text, at most {max_body_chars} characters. Posted as a system message."

    def clean_body(self) -> str:
        # Browsers send a textarea's line breaks as CRLF; chat clients send LF.
        body = self.cleaned_data["body"].replace("\r\n", "\n")
        try:
            services.message_body_check(body)
        except services.InvalidMessage as error:
            text = str(error)
            raise forms.ValidationError(f"{text[:1].upper()}{text[1:]}.", code=error.reason) from error
        return body


class CloseRoomsForm(forms.Form):
    """Why the rooms are being closed; told to everyone in them."""

    reason = forms.CharField(
        required=False,
        max_length=MAX_CLOSE_REASON_CHARS,
        widget=forms.TextInput(attrs={"size": 80}),
        help_text="Optional. Shown to everyone in the room as it closes.",
    )


class RemoveMembersForm(forms.Form):
    """Who, of the people in the selected rooms now, a moderator removes (and keeps out)."""

    members = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple,
        help_text="Each is sent away at once and kept out of every room for a while (RIPPLE_REMOVAL_S).",
    )

    def __init__(self, *args, choices: list[tuple[str, str]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        members = self.fields["members"]
        assert isinstance(members, forms.MultipleChoiceField)
        members.choices = choices
