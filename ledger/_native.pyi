def envelope_cid(person_id: bytes, version: int, prev: str | None, op: str, recorded_at: int,
                 actor: str | None, reason: str | None, email: bytes | None,
                 name: bytes | None, password: bytes | None, verified_at: int | None,
                 format: int, /) -> str: ...
