"""Display names that cannot pass for someone else's.

A name is folded to a comparison key, its *skeleton*: two names that a reader could take for
one another fold to the same skeleton. The folding follows Unicode TR39's idea with a compact
table of our own: NFKC, Cyrillic and Greek letters that look Latin, accents, invisible and
control characters, case, padding, and the digit/letter pairs 0/o and 1/l (and i/l, since a
capital I and a small l look alike in most fonts). It errs towards more names colliding:
a collision only ever refuses a guest's name.

A guest name is refused when its skeleton is a registered username's (``NameClaim``, one
indexed row per user, kept by the ``post_save`` receiver below) or a reserved word's
(``RIPPLE_RESERVED_NAMES``).
"""

from __future__ import annotations

import functools
import unicodedata
from typing import Any

from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import receiver

from .models import NameClaim

# Longest skeleton stored and compared: NFKC and the multi-letter folds can make a name
# longer; two names that agree on their first 255 folded characters count as the same.
MAX_SKELETON_CHARS = 255

# Applied before casefolding: capitals that look like a Latin capital whose small letter
# looks different (Greek Η is an H, its small η an n).
_UPPER = str.maketrans(
    {
        # Cyrillic
        "А": "a", "В": "b", "Е": "e", "К": "k", "М": "m", "Н": "h", "О": "o", "Р": "p",
        "С": "c", "Т": "t", "У": "y", "Х": "x", "Ѕ": "s", "І": "i", "Ј": "j", "Ү": "y",
        "Ԛ": "q", "Ԝ": "w", "Ӏ": "l", "Ѵ": "v",
        # Greek
        "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m",
        "Ν": "n", "Ο": "o", "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x",
    }
)  # fmt: skip

# Applied after casefolding: small letters (and what capitals fold to) that look Latin.
_LOWER = str.maketrans(
    {
        # Cyrillic
        "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "х": "x", "у": "y", "і": "l",
        "ј": "j", "ѕ": "s", "һ": "h", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l", "к": "k",
        "ѵ": "v", "ү": "y",
        # Greek
        "α": "a", "ο": "o", "ρ": "p", "ι": "l", "κ": "k", "ν": "v", "υ": "u", "χ": "x",
        "η": "n", "ε": "e", "τ": "t", "ϲ": "c", "ϳ": "j",
        # Latin look-alikes and digits. TR39 folds 0 to o, and 1 and I to l; after casefolding
        # I is i, so every i-like letter folds to l.
        "i": "l", "ı": "l", "ɑ": "a", "ɡ": "g", "ǀ": "l", "0": "o", "1": "l",
    }
)  # fmt: skip

# Letter pairs that read as one letter (TR39: rn/m, cl/d, vv/w), folded to the pair.
_PAIRS = (("m", "rn"), ("d", "cl"), ("w", "vv"))

# Invisible characters outside the format (Cf) and mark categories: Hangul fillers and the
# Mongolian vowel separator.
_INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0\u180e")


def skeleton(name: str) -> str:
    """The comparison key of a display name: equal for names a reader could confuse."""
    folded = unicodedata.normalize("NFKC", name).translate(_UPPER).casefold()
    # NFD splits accented letters so their marks can be dropped with the invisible characters.
    kept = []
    for char in unicodedata.normalize("NFD", folded):
        category = unicodedata.category(char)
        # C*: controls, format (zero-width, bidi), surrogates, private use, unassigned;
        # M*: accents and other marks (including variation selectors).
        if category[0] in "CM" or char in _INVISIBLE:
            continue
        kept.append(char)
    text = " ".join("".join(kept).split()).translate(_LOWER)
    for pair_from, pair_to in _PAIRS:
        text = text.replace(pair_from, pair_to)
    return text[:MAX_SKELETON_CHARS]


@functools.lru_cache(maxsize=8)
def _reserved_skeletons(names: tuple[str, ...]) -> frozenset[str]:
    return frozenset(skeleton(name) for name in names)


def is_reserved(name: str) -> bool:
    """True when ``name`` could pass for a word kept for the operators (system, admin, ...)."""
    return skeleton(name) in _reserved_skeletons(tuple(settings.RIPPLE_RESERVED_NAMES))


def is_claimed(name: str) -> bool:
    """True when ``name`` could pass for a registered user's username (one indexed lookup)."""
    return NameClaim.objects.filter(skeleton=skeleton(name)).exists()


def is_taken(name: str) -> bool:
    """True when a guest may not use ``name``: reserved, or a registered user's look-alike."""
    return is_reserved(name) or is_claimed(name)


def claim_username(user: Any) -> None:
    """Keep ``user``'s NameClaim in step with their username."""
    NameClaim.objects.update_or_create(user_id=user.pk, defaults={"skeleton": skeleton(user.get_username())})


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="ripple-name-claim")
def claim_on_user_saved(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    # Any save that may set the username, not only creation: a renamed user claims the new
    # name and frees the old. A login saves only last_login and costs nothing here.
    if update_fields is not None and instance.USERNAME_FIELD not in update_fields:
        return
    claim_username(instance)
