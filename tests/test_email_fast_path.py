"""The ASCII fast path of email normalisation gives exactly what the full validator gives."""

from __future__ import annotations

import email_validator
from hypothesis import given, settings
from hypothesis import strategies as st

from peoplelog.fields import normalise_email
from peoplelog.fields._email import MAX_LOCAL_PART, _simple
from peoplelog.schema import InvalidInput

ATOM = st.from_regex(r"[A-Za-z0-9_+-]{1,16}", fullmatch=True)
LABEL = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,10}[A-Za-z0-9])?", fullmatch=True) | (
    st.sampled_from(["xn--bcher-kva", "XN--80AK6AA92E", "xn--e1afmkfd"]))
TLD = st.sampled_from(["com", "ORG", "io", "test", "local", "arpa", "localhost", "onion",
                       "invalid", "example", "Museum", "internal"]) | st.from_regex(
    r"[A-Za-z]{2,8}", fullmatch=True)


def full_path(text: str) -> tuple[str, str] | None:
    try:
        result = email_validator.validate_email(
            text, check_deliverability=False, allow_smtputf8=True, allow_quoted_local=False)
    except email_validator.EmailNotValidError:
        return None
    if len(result.local_part.encode()) > MAX_LOCAL_PART:
        return None
    return (f"{result.local_part}@{result.domain.lower()}",
            f"{result.local_part.lower()}@{result.ascii_domain.lower()}")


@settings(max_examples=600, deadline=None)
@given(st.lists(ATOM, min_size=1, max_size=4), st.lists(LABEL, min_size=1, max_size=3), TLD)
def test_fast_path_agrees_with_the_validator(locals_: list[str], labels: list[str],
                                             tld: str) -> None:
    text = ".".join(locals_) + "@" + ".".join([*labels, tld])
    fast = _simple(text)
    expected = full_path(text)
    if fast is None:
        return
    assert expected is not None, "the fast path accepted what the validator refuses"
    assert (fast.display, fast.lookup_key) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(codec="ascii"), max_size=80))
def test_fast_path_never_accepts_what_the_validator_refuses(text: str) -> None:
    fast = _simple(text)
    if fast is not None:
        assert full_path(text) == (fast.display, fast.lookup_key)


def test_fast_path_is_what_normalise_email_returns() -> None:
    email = normalise_email("  Ada.Lovelace+notes@Example.ORG ")
    assert (email.display, email.lookup_key) == ("Ada.Lovelace+notes@example.org",
                                                 "ada.lovelace+notes@example.org")
    for special in ("a@b.test", "a@b.localhost", "a@b.home.arpa", "a@xn--bcher-kva.de"):
        assert _simple(special) is None


@settings(max_examples=600, deadline=None)
@given(st.lists(ATOM, min_size=1, max_size=4), st.lists(LABEL, min_size=1, max_size=3), TLD,
       st.sampled_from(["", "é", "ü", "ß", "İ", "ǅ"]))
def test_a_stored_email_gives_back_its_lookup_key(locals_: list[str], labels: list[str],
                                                  tld: str, accent: str) -> None:
    """What a lookup confirms: the lookup key of the stored (display) form, the ASCII
    shortcut included, is the lookup key of the address it was made from."""
    from peoplelog.ledger._write import lookup_key_of  # noqa: PLC0415

    text = accent + ".".join(locals_) + "@" + ".".join([*labels, tld])
    try:
        email = normalise_email(text)
    except InvalidInput:  # invalid addresses are not stored
        return
    assert lookup_key_of(email.display.encode()) == email.lookup_key
