"""Invite codes and the pass-phrase text that carries them.

A code is CODE_BODY characters from ALPHABET (no 0/O/1/I/L, which people misread when
copying by hand) followed by one check letter, so a typo is caught locally instead of costing an
attempt against the per-user limit. The body is HMAC-SHA256(campaign secret, user id, n): stable
per (campaign, user) and unguessable without the secret; n > 0 only when a body collides with
another user's code (the store keeps the first free one, so what it stored is authoritative).
"""
from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata

from services.common.errors import InvalidArgument

from .model import face_yuan_text

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # 31 characters, none of 0 O 1 I L
CHECK_LETTERS = "ABCDEFGHJKMNPQRSTUVWXYZ"  # 23 letters of ALPHABET
CODE_BODY = 8
CODE_LENGTH = CODE_BODY + 1
MAX_TEXT_BYTES = 4096
MAX_CANDIDATES = 5

_INDEX = {c: i for i, c in enumerate(ALPHABET)}
_BETWEEN_YEN = re.compile(r"¥([^¥]{1,60})¥")
_RUN = re.compile(r"[A-Z0-9]+")
# What people (and chat apps) put inside a code they pass on: spaces, dashes, dots, and the
# invisible format characters apps insert when text is copied or wrapped: zero-width spaces and
# joiners, soft hyphens (line breaking of a long word), and the direction marks and embeddings
# (LRM, RLM, U+202A..U+202E, U+2066..U+2069) that Android and bidi-aware chat apps wrap copied
# runs in. The user sees a perfect code, so refusing it would leave nothing to correct.
_SEPARATOR_CHARS = r"\s\-_.·,，。:：\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff"
_SEPARATORS = re.compile(f"[{_SEPARATOR_CHARS}]+")
# Code characters split by separators, e.g. "ABCD EFGHJ" inside a sentence.
_SPACED_RUN = re.compile(f"[A-Z0-9](?:[A-Z0-9{_SEPARATOR_CHARS}]*[A-Z0-9])?")


def check_letter(body: str) -> str:
    # Position weights make a swap of two neighbours change the letter, not just a substitution.
    total = sum((i + 1) * _INDEX[c] for i, c in enumerate(body))
    return CHECK_LETTERS[total % len(CHECK_LETTERS)]


def is_well_formed(code: str) -> bool:
    if len(code) != CODE_LENGTH or any(c not in _INDEX for c in code):
        return False
    return check_letter(code[:-1]) == code[-1]


def code_for(secret: bytes, user_id: str, n: int = 0) -> str:
    digest = hmac.new(secret, f"{user_id}\x00{n}".encode(), hashlib.sha256).digest()
    # 64 bits of the MAC give 31**8 (~2**39.6) bodies with negligible bias.
    value = int.from_bytes(digest[:8], "big")
    body = []
    for _ in range(CODE_BODY):
        value, idx = divmod(value, len(ALPHABET))
        body.append(ALPHABET[idx])
    text = "".join(body)
    return text + check_letter(text)


def pass_phrase(code: str, face_value_fen: int, *, offers_card: bool = True) -> str:
    """The text a user shares. It promises the friend a card only while one can be granted
    (model.offers_cards); otherwise it still carries the code, since an accepted invite may
    count for the lottery even when no card comes with it."""
    if not offers_card:
        return f"¥{code}¥ 复制这段口令，打开App参与免单活动"
    return f"¥{code}¥ 复制这段口令，打开App领{face_yuan_text(face_value_fen)}元免单卡"


def extract_codes(text: str) -> list[str]:
    """Well-formed codes found in a bare code or any pasted text, most likely first.

    Accepts full-width characters (NFKC folds ￥ to ¥ and Ｋ to K), any case, spaces or line
    breaks inside the code, and surrounding words. Raises InvalidArgument(text) when the text is
    empty, longer than MAX_TEXT_BYTES, or contains nothing shaped like a code."""
    if not text or not text.strip():
        raise InvalidArgument("text", "必填：邀请码或口令 / required: an invite code or pass-phrase")
    # Length check before any work on the text: a megabyte of garbage is rejected in O(1).
    if len(text) > MAX_TEXT_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
        raise InvalidArgument("text", f"最多{MAX_TEXT_BYTES}字节 / at most {MAX_TEXT_BYTES} bytes")
    folded = unicodedata.normalize("NFKC", text).upper()
    candidates: list[str] = []

    def consider(raw: str) -> None:
        code = _SEPARATORS.sub("", raw)
        if is_well_formed(code) and code not in candidates:
            candidates.append(code)

    for inner in _BETWEEN_YEN.findall(folded):
        consider(inner)
    for run in _RUN.findall(folded):
        consider(run)
    consider(folded)
    if not candidates:
        # Only when nothing above matched, so a text that found its code before still finds
        # exactly the same candidates (AcceptInvite's request fingerprint is made of them): a
        # code split into pieces inside a sentence ("码是 ABCD EFGHJ 快来", "CODE ABCD-EFGHJ").
        # Whole pieces only, joined in order: a window across word boundaries would turn up a
        # well-formed wrong code for about 1 in 23 windows.
        for spaced in _SPACED_RUN.findall(folded):
            pieces = [p for p in _SEPARATORS.split(spaced) if p]
            for start in range(len(pieces)):
                joined = ""
                for piece in pieces[start:]:
                    joined += piece
                    if len(joined) >= CODE_LENGTH:
                        break
                if len(joined) == CODE_LENGTH:
                    consider(joined)
    if not candidates:
        raise InvalidArgument("text", "未找到邀请码 / no invite code found in the text")
    return candidates[:MAX_CANDIDATES]
