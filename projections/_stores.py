"""What can be checked without keys beside the chains: the tables a login trusts.

``people_latest`` must equal each person's chain head, column for column; every person who
is not erased must have a data key (one row per key version, the versions the head's
ciphertexts name among them) and, with an email, exactly one ``email_lookup`` claim; an
erased person must have neither, so a key or a claim that reappears after an erasure is
reported. A tampered projection is found by ``verify`` as well as by ``projections check``
(which, with the keyring, also recomputes every claim).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg

from peoplelog.schema import Op

from ._latest import latest_findings, lookup_shape_findings
from ._verify import Finding

__all__ = ["iter_store_findings"]

Conn = psycopg.Connection[Any]

_HEADER_KEY_VERSION = ("CASE WHEN octet_length({0}) >= 6 THEN (get_byte({0}, 2)::bigint << 24)"
                       " | (get_byte({0}, 3) << 16) | (get_byte({0}, 4) << 8)"
                       " | get_byte({0}, 5) END")
"""The data-key version a field ciphertext names in its header (bytes 2 to 5, big-endian):
readable without any key."""

_KEYS = f"""
SELECT coalesce(h.person_id, k.person_id), h.person_id IS NULL, h.version,
       h.op = %(erased)s, coalesce(k.n, 0),
       ARRAY(SELECT v FROM unnest(ARRAY[{_HEADER_KEY_VERSION.format("h.email")},
                                        {_HEADER_KEY_VERSION.format("h.name")},
                                        {_HEADER_KEY_VERSION.format("h.password")}]) AS v
             WHERE v IS NOT NULL AND NOT v = ANY(coalesce(k.versions, '{{}}')))
FROM (SELECT DISTINCT ON (person_id) person_id, version, op, email, name, password
      FROM people ORDER BY person_id, version DESC, seq) AS h
FULL JOIN (SELECT person_id, count(*) AS n, array_agg(key_version::bigint) AS versions
           FROM peoplelog_key_versions GROUP BY person_id) AS k ON k.person_id = h.person_id
WHERE h.person_id IS NULL
   OR (h.op = %(erased)s AND k.n IS NOT NULL)
   OR (h.op <> %(erased)s AND (k.n IS NULL
       OR NOT coalesce(k.versions, '{{}}') @> ARRAY(
           SELECT v FROM unnest(ARRAY[{_HEADER_KEY_VERSION.format("h.email")},
                                      {_HEADER_KEY_VERSION.format("h.name")},
                                      {_HEADER_KEY_VERSION.format("h.password")}]) AS v
           WHERE v IS NOT NULL)))
ORDER BY 1
"""  # noqa: S608 - only fixed column names are interpolated
"""Persons whose data keys do not fit their chain head: keys of no person, keys of an erased
person, no key (or not the version the head's ciphertexts name) for a person not erased."""


def iter_store_findings(conn: Conn) -> Iterator[Finding]:
    """Findings about ``people_latest``, ``email_lookup`` and ``person_keys`` against the
    chains, without keys (see the module's docstring)."""
    yield from latest_findings(conn)
    yield from lookup_shape_findings(conn)
    yield from _key_findings(conn)


def _key_findings(conn: Conn) -> Iterator[Finding]:
    with conn.cursor(name="peoplelog_key_rows") as cur:
        cur.itersize = 2000
        cur.execute(_KEYS, {"erased": Op.ERASED.value})
        for pid, unknown, version, erased, keys, absent in cur:
            if unknown:
                yield Finding(kind="key_unknown_person", person_id=pid, version=None,
                              detail=f"person_keys has {keys} data key(s) for a person with "
                                     "no version in people")
            elif erased:
                yield Finding(kind="key_after_erasure", person_id=pid, version=version,
                              detail=f"person_keys has {keys} data key(s) for an erased "
                                     "person: a key came back after the erasure")
            elif not keys:
                yield Finding(kind="key_missing", person_id=pid, version=version,
                              detail="person_keys has no data key for this person, who is "
                                     "not erased (the key store is damaged)")
            else:
                yield Finding(kind="key_missing", person_id=pid, version=version,
                              detail="person_keys lacks the data key version(s) "
                                     + ", ".join(str(v) for v in absent)
                                     + " that the newest version's ciphertexts name")
