"""Virtual key material: random, shown once, stored only as its SHA-256."""

from __future__ import annotations

import hashlib
import secrets

PREFIX = "sk-ss-"
BODY_LEN = 43  # token_urlsafe(32): 256 random bits


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def hint_of(key: str) -> str:
    """What the admin API shows to recognise a key: prefix and last 4 characters."""
    return f"{key[: len(PREFIX) + 2]}…{key[-4:]}"


def looks_like_key(key: str) -> bool:
    return key.startswith(PREFIX) and len(key) == len(PREFIX) + BODY_LEN
