"""The accounts layer's password rules: a length range and an offline strength estimate
(``zxcvbn``), checked before anything is looked up, with a message that says what to do
and never repeats the password."""

from __future__ import annotations

from collections.abc import Sequence

from zxcvbn import zxcvbn

from peoplelog.fields import MAX_PASSWORD, check_password_policy
from peoplelog.schema import InvalidInput

__all__ = ["PasswordPolicy"]

_ZXCVBN_LIMIT = 72
"""zxcvbn's time grows with the length: beyond this many characters only the first are
scored (a password that long is strong enough on length alone). zxcvbn 4.5 refuses longer
input outright (a ValueError), so this is also its limit."""


class PasswordPolicy:
    """``min_length`` to ``MAX_PASSWORD`` characters, no NUL, valid UTF-8 (no lone
    surrogates), and a zxcvbn score of at least ``min_score`` (0 to 4) given what the
    person's own details would make guessable."""

    def __init__(self, min_length: int = 12, min_score: int = 3) -> None:
        if not 1 <= min_length <= MAX_PASSWORD or not 0 <= min_score <= 4:
            raise InvalidInput("the password policy needs 1 <= min_length <= 1024 and "
                               "0 <= min_score <= 4")
        self.min_length = min_length
        self.min_score = min_score

    def __repr__(self) -> str:
        return f"PasswordPolicy(min_length={self.min_length}, min_score={self.min_score})"

    def check(self, password: str, user_inputs: Sequence[str] = ()) -> str:
        check_password_policy(password)  # type, NUL, UTF-8, the ledger's own bounds
        if len(password) < self.min_length:
            raise InvalidInput(f"password is too short (at least {self.min_length} characters)")
        if self.min_score:
            result = zxcvbn(password[:_ZXCVBN_LIMIT],
                            user_inputs=[value for value in user_inputs if value])
            if result["score"] < self.min_score:
                feedback = result.get("feedback") or {}
                hints = [feedback.get("warning") or "", *(feedback.get("suggestions") or [])]
                advice = " ".join(hint for hint in hints if hint) or \
                    "Add another word or two; uncommon words are better."
                raise InvalidInput(f"password is too weak: {advice}")
        return password
