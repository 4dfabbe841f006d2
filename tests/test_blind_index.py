"""The blind index is HMAC-SHA256 (RFC 2104) exactly: held to the standard library's HMAC
for any key and input (its vectors are in tests/vectors/blind_index.json)."""

from __future__ import annotations

import hmac

from hypothesis import given
from hypothesis import strategies as st

from peoplelog.fields import BlindIndex, Key, KeyPurpose, normalise_email


@given(secret=st.binary(min_size=1, max_size=200),
       external_id=st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]),
                           max_size=300),
       local=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9+_.-]{0,30}[A-Za-z0-9]", fullmatch=True))
def test_digests_are_hmac_sha256_of_their_labelled_input(secret: bytes, external_id: str,
                                                         local: str) -> None:
    index = BlindIndex(Key("blind", KeyPurpose.BLIND_INDEX, secret, "2026-01-01"))
    assert index.external_id_digest(external_id) == hmac.digest(
        secret, b"peoplelog/external-id/1\x00" + external_id.encode(), "sha256")
    if ".." in local:
        return
    email = normalise_email(f"{local}@Example.ORG")
    assert index.digest(email) == hmac.digest(
        secret, b"peoplelog/email/1\x00" + email.lookup_key.encode(), "sha256")
