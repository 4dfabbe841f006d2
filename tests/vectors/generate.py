"""Regenerate peoplelog's test vectors (cid.json, field_cipher.json, blind_index.json).

This script is deliberately independent of peoplelog: it imports nothing from ``ledger``,
``fields`` or ``schema``. It follows docs/FORMAT.md with the standard library (hashlib,
hmac, base64, json) and ``cryptography``'s AESGCM, and contains its own small RFC 8785
(JCS) encoder. The tests check peoplelog's code against what this script writes.

    python tests/vectors/generate.py            # rewrite the files next to this script
    python tests/vectors/generate.py OUT_DIR    # write them somewhere else

Everything is deterministic: fixed keys, fixed nonces, fixed identifiers. The keys here are
test keys; never use them for anything else.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import math
import struct
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HERE = Path(__file__).resolve().parent

# --- building blocks (see docs/FORMAT.md) ---------------------------------------------------

CID_PREFIX = bytes([0x01, 0x55, 0x12, 0x20])  # CIDv1, raw, sha2-256, 32-byte digest
MAX_SAFE = 2**53 - 1


def fixed_bytes(label: str, length: int) -> bytes:
    """Deterministic filler bytes (SHA-256 in counter mode over a label)."""
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(f"{label}/{counter}".encode()).digest()
        counter += 1
    return out[:length]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def cid(data: bytes) -> str:
    multihash_and_prefix = CID_PREFIX + hashlib.sha256(data).digest()
    return "b" + base64.b32encode(multihash_and_prefix).decode("ascii").rstrip("=").lower()


_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n",
                  "\r": "\\r", "\t": "\\t"}


def jcs_string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def jcs_number(value: float) -> str:
    """ECMAScript Number.prototype.toString, as RFC 8785 section 3.2.2.3 requires."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError("NaN and Infinity are not JSON")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # repr gives the shortest digits that round-trip, as ECMAScript does.
    _, digit_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    k = len(digits)
    n = k + int(exponent)  # the decimal point sits after n digits
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        body = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + body


def jcs(value: Any) -> str:
    """RFC 8785 JSON text of a JSON value (null, bool, int, float, str, list, dict)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        if abs(value) > MAX_SAFE:
            raise ValueError("integer outside the exact range of IEEE 754 doubles")
        return str(value)
    if isinstance(value, float):
        return jcs_number(value)
    if isinstance(value, str):
        return jcs_string(value)
    if isinstance(value, list):
        return "[" + ",".join(jcs(item) for item in value) + "]"
    if isinstance(value, dict):
        # Members sorted by their names as arrays of UTF-16 code units.
        names = sorted(value, key=lambda name: name.encode("utf-16-be"))
        return "{" + ",".join(jcs_string(name) + ":" + jcs(value[name]) for name in names) + "}"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


# --- cid.json ---------------------------------------------------------------------------------

PERSON_A = "0b7e5c2a-3f1d-4e8b-9a6c-1d2e3f405162"
PERSON_B = "f47ac10b-58cc-4372-a567-0e02b2c3d479"


def _envelope_vector(description: str, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "format": 1, "person_id": PERSON_A, "version": 0, "prev": None, "op": "created",
        "recorded_at": 1_700_000_000_123_456, "actor": None, "reason": None,
        "email": None, "name": None, "password": None, "verified_at": None,
    }
    record.update(fields)
    envelope = dict(record)
    for name in ("email", "name", "password"):
        if record[name] is not None:
            envelope[name] = b64url(record[name])
            record[name] = record[name].hex()
    canonical = jcs(envelope).encode("utf-8")
    return {
        "description": description,
        "record": record,
        "envelope": envelope,
        "canonical": canonical.decode("utf-8"),
        "canonical_hex": canonical.hex(),
        "sha256": hashlib.sha256(canonical).hexdigest(),
        "cid": cid(canonical),
    }


def cid_vectors() -> dict[str, Any]:
    email_ct = fixed_bytes("email-ciphertext", 6 + 12 + 32 + 16)
    name_ct = fixed_bytes("name-ciphertext", 6 + 12 + 64 + 16)
    pw_ct = fixed_bytes("password-ciphertext", 6 + 12 + 128 + 16)
    v0 = _envelope_vector(
        "version 0 of a person: ciphertexts present, no actor or reason (nulls)",
        email=email_ct, name=name_ct,
    )
    v1 = _envelope_vector(
        "version 1: prev links version 0, unicode actor and reason, email verified",
        version=1, prev=v0["cid"], op="email_verified",
        recorded_at=1_700_000_100_000_000, verified_at=1_700_000_100_000_000,
        actor="zoë@ops-東京", reason="Bestätigt per Link ✓ (ticket #42) 🚀",
        email=email_ct, name=name_ct,
    )
    envelopes = [
        v0,
        v1,
        _envelope_vector(
            "reason with characters JSON must escape: quote, backslash, newline, tab, "
            "U+001F; U+007F, U+2028 and U+00E9 stay as they are",
            version=2, prev=v1["cid"], op="password_changed",
            recorded_at=1_700_000_200_000_001, actor='svc "auth"\\prod',
            reason="line one\nline two\ttabbed \x1f unit-sep \x7f del \u2028 ls é",
            email=email_ct, name=name_ct, password=pw_ct, verified_at=1_700_000_100_000_000,
        ),
        _envelope_vector(
            "erased version: every field null, only the facts of the erasure remain",
            person_id=PERSON_B, version=7, prev=cid(b"an earlier version"), op="erased",
            recorded_at=1_800_000_000_000_000, actor="dpo", reason="GDPR art. 17",
        ),
        _envelope_vector(
            "largest exact integers: recorded_at = 2**53 - 1, verified_at before 1970 "
            "(negative), version 2**31 - 1",
            person_id=PERSON_B, version=2**31 - 1, prev=cid(b"previous"), op="updated",
            recorded_at=MAX_SAFE, verified_at=-(2**40) - 1, email=b"", name=b"\xfb\xff\xbf",
            password=bytes(range(256)),
        ),
        _envelope_vector(
            "byte fields whose base64url uses '-' and '_' and would need 1 or 2 '=' pads",
            version=0, recorded_at=0, email=b"\xfb\xef", name=b"\xff\xfe\xfd\xfc",
            password=b"\x00",
        ),
    ]
    raw = []
    dwyl_base58 = {  # from dwyl/cid's README doctests and tests (base58btc form)
        b"": "zb2rhmy65F3REf8SZp7De11gxtECBGgUKaLdiDj7MCGCHxbDW",
        b"hello": "zb2rhZfjRh2FHHB2RkHVEvL2vJnCTcu7kwRqgVsf9gpkLgteo",
        b"Hello World": "zb2rhhnbH6zTaAj948YVsYxW4c5AY6TfJURC9EGhQum3Kq7b3",
        b'{"a":"a"}': "zb2rhdeaHh2UHghBcwxeFP1GRUYETDH96DkV6oppiz5Gk1xGN",
        b"{}": "zb2rhbE2775XANjTsRTV9sxfFMWxrGuMWYgshDn9xvjG69fZ3",
    }
    dwyl_base32 = {  # dwyl/cid README doctest, base32 form
        b"hello": "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq",
        b'{"key":"value"}': "bafkreihehk6pgn2sisbzyajpsyz7swdc2izkswya2w6hgsftbgfz73l7gi",
    }
    inputs = [
        (b"", "empty input"),
        (b"hello", "ASCII text without a newline"),
        (b"hello\n", "the same with a trailing newline (a different CID)"),
        (b"Hello World", "dwyl/cid test string"),
        (b'{"a":"a"}', "dwyl/cid test map as Jason encodes it"),
        (b"{}", "empty JSON object"),
        (b'{"key":"value"}', "dwyl/cid README map"),
        (bytes(range(256)), "every byte value 0x00..0xff"),
        ("zoë 東京 🚀".encode(), "UTF-8 text"),
    ]
    for data, description in inputs:
        entry: dict[str, Any] = {"description": description, "input_hex": data.hex()}
        with contextlib.suppress(UnicodeDecodeError):
            entry["input_text"] = data.decode("utf-8")
        entry["sha256"] = hashlib.sha256(data).hexdigest()
        entry["cid"] = cid(data)
        if data in dwyl_base32 and dwyl_base32[data] != entry["cid"]:
            raise AssertionError(f"disagrees with dwyl/cid for {data!r}")
        if data in dwyl_base58:
            entry["dwyl_base58"] = dwyl_base58[data]
        raw.append(entry)

    documents = []
    for text, description in [
        ('{"b": 1, "a": 2}', "members are sorted, whitespace removed"),
        ('{\n  "z": [3, 2, 1],\n  "a": {"y": null, "x": true, "w": false}\n}',
         "nested objects and arrays; array order is kept"),
        ('{"caf\\u00e9": "\\u00e9\\u2028\\u001f\\/"}',
         "escapes in the input are decoded; only the required ones are written back"),
        ('{"\\ufb01": 1, "\\ud83d\\ude00": 2, "\\u00e9": 3, "Z": 4, "a": 5}',
         "names sort by UTF-16 code units: U+1F600 (D83D DE00) before U+FB01"),
        ('[1.5, 100.0, -0.0, 1e21, 1e-7, 0.000001, 1.2345678901234568e20, 4.5e-300]',
         "numbers print as ECMAScript does"),
        ('{"n": 9007199254740991, "m": -9007199254740991}',
         "the largest exact integers"),
        ('"just a string"', "a bare string is a JSON document too"),
    ]:
        document = json.loads(text)
        canonical = jcs(document).encode("utf-8")
        documents.append({
            "description": description,
            "input": text,
            "canonical": canonical.decode("utf-8"),
            "cid": cid(canonical),
        })
    return {
        "_about": "peoplelog CID test vectors; see docs/FORMAT.md. 'canonical' is the text "
                  "whose UTF-8 bytes (canonical_hex) are hashed; byte fields in 'record' are "
                  "hex, in 'envelope' unpadded base64url. Generated by tests/vectors/"
                  "generate.py.",
        "cid_prefix_hex": CID_PREFIX.hex(),
        "envelopes": envelopes,
        "raw": raw,
        "json_documents": documents,
    }


# --- field_cipher.json --------------------------------------------------------------------------

FIELD_AD_TAG = b"peoplelog/field/1\x00"
WRAP_AD_TAG = b"peoplelog/data-key/1\x00"


def pad(data: bytes) -> bytes:
    data += b"\x80"
    while len(data) % 32:
        data += b"\x00"
    return data


def field_header(key_version: int, version: int = 1, algorithm: int = 1) -> bytes:
    return struct.pack(">BBI", version, algorithm, key_version)


def field_ad(header: bytes, person_id: str, field: str) -> bytes:
    return FIELD_AD_TAG + header + uuid.UUID(person_id).bytes + field.encode("ascii")


def seal_field(data_key: bytes, person_id: str, field: str, key_version: int, nonce: bytes,
               padded: bytes, *, header: bytes | None = None) -> tuple[bytes, bytes]:
    header = header if header is not None else field_header(key_version)
    ad = field_ad(header, person_id, field)
    return header + nonce + AESGCM(data_key).encrypt(nonce, padded, ad), ad


def field_cipher_vectors() -> dict[str, Any]:
    data_key = fixed_bytes("data-key/person-a/1", 32)
    other_key = fixed_bytes("data-key/person-a/2", 32)
    valid: list[dict[str, Any]] = []
    plaintexts = [
        ("email", "ada@example.org", "an email (display form)"),
        ("name", "Ada Lovelace", "a name"),
        ("name", "Zoë Ångström-東京 🚀", "a unicode name"),
        ("name", "", "empty plaintext pads to one 32-byte block"),
        ("name", "x" * 31, "31 bytes + 0x80 fill exactly one block"),
        ("name", "y" * 32, "32 bytes need a second block"),
        ("password", "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0$"
                     "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA", "a password hash (PHC string)"),
    ]
    for index, (field, text, description) in enumerate(plaintexts):
        nonce = fixed_bytes(f"nonce/{index}", 12)
        plaintext = text.encode("utf-8")
        padded = pad(plaintext)
        token, ad = seal_field(data_key, PERSON_A, field, 1, nonce, padded)
        valid.append({
            "description": description,
            "data_key_hex": data_key.hex(),
            "person_id": PERSON_A,
            "key_version": 1,
            "field": field,
            "nonce_hex": nonce.hex(),
            "plaintext": text,
            "plaintext_hex": plaintext.hex(),
            "padded_hex": padded.hex(),
            "associated_data_hex": ad.hex(),
            "ciphertext_hex": token.hex(),
        })

    base = bytes.fromhex(valid[0]["ciphertext_hex"])
    nonce0 = bytes.fromhex(valid[0]["nonce_hex"])
    padded0 = bytes.fromhex(valid[0]["padded_hex"])

    def flip(data: bytes, index: int) -> bytes:
        out = bytearray(data)
        out[index] ^= 0x01
        return bytes(out)

    def bad(description: str, token: bytes, *, field: str = "email",
            person_id: str = PERSON_A, key_version: int = 1,
            key: bytes = data_key) -> dict[str, Any]:
        return {"description": description, "data_key_hex": key.hex(), "person_id": person_id,
                "key_version": key_version, "field": field, "ciphertext_hex": token.hex()}

    invalid = [
        bad("flipped bit in the ciphertext body", flip(base, 6 + 12)),
        bad("flipped bit in the tag (last byte)", flip(base, len(base) - 1)),
        bad("flipped bit in the nonce", flip(base, 6)),
        bad("flipped bit in the key version of the header", flip(base, 5)),
        bad("format version byte changed to 0x02", b"\x02" + base[1:]),
        bad("algorithm byte changed to 0x02", base[:1] + b"\x02" + base[2:]),
        bad("truncated: last byte of the tag missing", base[:-1]),
        bad("truncated: header and nonce only", base[: 6 + 12]),
        bad("truncated: 5 bytes, not even a header", base[:5]),
        bad("empty", b""),
        bad("wrong field: an email ciphertext read as the name", base, field="name"),
        bad("wrong field: an email ciphertext read as the password", base, field="password"),
        bad("wrong person: same data key, another person_id", base, person_id=PERSON_B),
        bad("wrong key version: the reader's data key is version 2", base, key_version=2),
        bad("wrong key: a different data key with the same version", base, key=other_key),
        bad("header rewritten to key version 2 and decrypted with version 2 (the header "
            "is in the associated data)", base[:2] + struct.pack(">I", 2) + base[6:],
            key_version=2),
        bad("valid AES-GCM, but the plaintext has no 0x80 padding marker",
            seal_field(data_key, PERSON_A, "email", 1, nonce0, b"\x00" * 32)[0]),
        bad("valid AES-GCM, but non-zero bytes after the 0x80 marker",
            seal_field(data_key, PERSON_A, "email", 1, nonce0,
                       padded0[:-1] + b"\x01")[0]),
        bad("valid AES-GCM under format version 2 (unknown version, AD matches)",
            seal_field(data_key, PERSON_A, "email", 1, nonce0, padded0,
                       header=field_header(1, version=2))[0]),
        bad("valid AES-GCM under algorithm 2 (unknown algorithm, AD matches)",
            seal_field(data_key, PERSON_A, "email", 1, nonce0, padded0,
                       header=field_header(1, algorithm=2))[0]),
    ]

    kek = fixed_bytes("kek/kek-1", 32)
    kek_id = "kek-1"
    wrap_nonce = fixed_bytes("nonce/wrap", 12)
    wrap_ad = WRAP_AD_TAG + kek_id.encode("ascii") + b"\x00" + uuid.UUID(PERSON_A).bytes \
        + struct.pack(">I", 1)
    wrapped = bytes([1, 1]) + wrap_nonce + AESGCM(kek).encrypt(wrap_nonce, data_key, wrap_ad)
    wrapped_key = {
        "description": "person A's data key (version 1) wrapped by key-encryption key "
                       "'kek-1'; it decrypts every valid field vector",
        "kek_id": kek_id,
        "kek_hex": kek.hex(),
        "person_id": PERSON_A,
        "key_version": 1,
        "nonce_hex": wrap_nonce.hex(),
        "associated_data_hex": wrap_ad.hex(),
        "data_key_hex": data_key.hex(),
        "wrapped_hex": wrapped.hex(),
    }

    def bad_wrap(description: str, blob: bytes, *, kek_id: str = kek_id,
                 person_id: str = PERSON_A, key_version: int = 1) -> dict[str, Any]:
        return {"description": description, "kek_id": kek_id, "kek_hex": kek.hex(),
                "person_id": person_id, "key_version": key_version,
                "wrapped_hex": blob.hex()}

    invalid_wrapped = [
        bad_wrap("flipped bit in the wrapped key", flip(wrapped, 2 + 12)),
        bad_wrap("truncated by one byte", wrapped[:-1]),
        bad_wrap("same secret, but the key-encryption key is named 'kek-2'", wrapped,
                 kek_id="kek-2"),
        bad_wrap("wrapped for person A, unwrapped for person B", wrapped, person_id=PERSON_B),
        bad_wrap("wrapped as version 1, unwrapped as version 2", wrapped, key_version=2),
    ]
    return {
        "_about": "peoplelog field ciphertext test vectors; see docs/FORMAT.md. Every "
                  "'invalid' token must fail to decrypt (DecryptionFailed). Generated by "
                  "tests/vectors/generate.py.",
        "valid": valid,
        "invalid": invalid,
        "wrapped_key": wrapped_key,
        "invalid_wrapped": invalid_wrapped,
    }


# --- blind_index.json ---------------------------------------------------------------------------

BLIND_TAG = b"peoplelog/email/1\x00"

# raw input -> (display form, lookup key), written out by hand from the documented rules:
# trim, NFC, domain lower-cased (display: Unicode; lookup: IDNA A-labels), local part kept in
# display and lower-cased in the lookup key, +tags and dots kept.
EMAILS: list[tuple[str, str, str, str]] = [
    ("ada@example.org", "ada@example.org", "ada@example.org", "plain"),
    ("Ada@EXAMPLE.ORG", "Ada@example.org", "ada@example.org", "domain case folded"),
    ("ada@Example.Org", "ada@example.org", "ada@example.org", "mixed-case domain"),
    ("ADA@example.org", "ADA@example.org", "ada@example.org",
     "local part lower-cased in the lookup key only"),
    ("  ada@example.org\n", "ada@example.org", "ada@example.org", "surrounding space trimmed"),
    ("ada+news@example.org", "ada+news@example.org", "ada+news@example.org", "+tag kept"),
    ("a.da@example.org", "a.da@example.org", "a.da@example.org", "dots kept"),
    ("ada@b\u00fccher.example", "ada@b\u00fccher.example", "ada@xn--bcher-kva.example",
     "IDN domain: lookup key uses the A-label"),
    ("ada@B\u00dcCHER.example", "ada@b\u00fccher.example", "ada@xn--bcher-kva.example",
     "upper-case IDN domain"),
    ("ada@xn--bcher-kva.example", "ada@b\u00fccher.example", "ada@xn--bcher-kva.example",
     "IDN domain given as its A-label"),
    ("ada@\u4f8b\u3048.jp", "ada@\u4f8b\u3048.jp", "ada@xn--r8jz45g.jp", "Japanese domain"),
    ("ada@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.org", "ada@example.org",
     "ada@example.org", "full-width domain letters map to ASCII (UTS #46)"),
    ("jose\u0301@example.org", "jos\u00e9@example.org", "jos\u00e9@example.org",
     "decomposed e + U+0301 composed by NFC"),
    ("JOS\u00c9@example.org", "JOS\u00c9@example.org", "jos\u00e9@example.org",
     "non-ASCII local part lower-cased in the lookup key"),
    ("\u0430da@example.org", "\u0430da@example.org", "\u0430da@example.org",
     "Cyrillic U+0430 in the local part"),
    ("ada@ex\u0430mple.org", "ada@ex\u0430mple.org", "ada@xn--exmple-4nf.org",
     "Cyrillic U+0430 in the domain"),
    ("\uff41da@example.org", "\uff41da@example.org", "\uff41da@example.org",
     "full-width a in the local part (NFC does not fold it)"),
    ("ada@stra\u00dfe.example", "ada@stra\u00dfe.example", "ada@xn--strae-oqa.example",
     "sharp s in the domain kept (non-transitional IDNA)"),
    ("ada@strasse.example", "ada@strasse.example", "ada@strasse.example", "ss domain"),
    ("\u00df@example.org", "\u00df@example.org", "\u00df@example.org", "sharp s local part"),
    ("SS@example.org", "SS@example.org", "ss@example.org", "SS local part"),
    ("ad\u03bf@example.org", "ad\u03bf@example.org", "ad\u03bf@example.org",
     "Greek omicron U+03BF"),
    ("ado@example.org", "ado@example.org", "ado@example.org", "Latin o"),
]

MUST_NOT_COLLIDE = [
    ("ada@example.org", "\u0430da@example.org", "Latin a vs Cyrillic U+0430 (local part)"),
    ("ada@example.org", "ada@ex\u0430mple.org", "Latin a vs Cyrillic U+0430 (domain)"),
    ("ada@example.org", "\uff41da@example.org", "a vs full-width a (local part)"),
    ("ada@example.org", "ada+news@example.org", "+tags are not stripped"),
    ("ada@example.org", "a.da@example.org", "dots are not removed"),
    ("ada@stra\u00dfe.example", "ada@strasse.example", "sharp s vs ss (domain)"),
    ("\u00df@example.org", "SS@example.org", "sharp s vs ss (local part)"),
    ("ado@example.org", "ad\u03bf@example.org", "Latin o vs Greek omicron"),
]

REJECTED = [
    ("", "empty"),
    ("   ", "only spaces"),
    ("no-at-sign.example.org", "no @"),
    ("ada@@example.org", "two @"),
    ("ada@example.org.", "trailing dot in the domain"),
    ("ada\x00@example.org", "NUL byte"),
    ("ada\u200b@example.org", "zero-width space (invisible formatting character)"),
    ('"ada"@example.org', "quoted local part"),
    ("a" * 250 + "@example.org", "longer than 254 characters"),
]


def blind_index_vectors() -> dict[str, Any]:
    key = fixed_bytes("blind-index/blind-index-1", 32)
    cases = []
    for raw, display, lookup, note in EMAILS:
        message = BLIND_TAG + lookup.encode("utf-8")
        cases.append({
            "description": note,
            "raw": raw,
            "display": display,
            "lookup_key": lookup,
            "hmac_input_hex": message.hex(),
            "hmac_sha256_hex": hmac.new(key, message, hashlib.sha256).hexdigest(),
        })
    by_raw = {case["raw"]: case for case in cases}
    for a, b, why in MUST_NOT_COLLIDE:
        if by_raw[a]["hmac_sha256_hex"] == by_raw[b]["hmac_sha256_hex"]:
            raise AssertionError(f"vectors collide: {why}")
    return {
        "_about": "peoplelog email blind index vectors (normalisation version 1); see "
                  "docs/FORMAT.md. Strings are escaped so look-alike characters stay "
                  "visible. Generated by tests/vectors/generate.py.",
        "normalisation_version": 1,
        "key_id": "blind-index-1",
        "key_hex": key.hex(),
        "cases": cases,
        "must_not_collide": [{"a": a, "b": b, "description": why}
                             for a, b, why in MUST_NOT_COLLIDE],
        "rejected": [{"raw": raw, "description": why} for raw, why in REJECTED],
    }


# --- main -------------------------------------------------------------------------------------


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=True) + "\n"


def generate() -> dict[str, str]:
    """File name -> file text."""
    return {
        "cid.json": render(cid_vectors()),
        "field_cipher.json": render(field_cipher_vectors()),
        "blind_index.json": render(blind_index_vectors()),
    }


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else HERE
    out.mkdir(parents=True, exist_ok=True)
    for name, text in generate().items():
        (out / name).write_text(text, encoding="utf-8")
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
