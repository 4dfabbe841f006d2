def envelope_cid(person_id: bytes, version: int, prev: str | None, op: str, recorded_at: int,
                 actor: str | None, reason: str | None, email: bytes | None,
                 name: bytes | None, password: bytes | None, verified_at: int | None,
                 format: int, /) -> str: ...

class NewPersonRows:
    def __init__(self, segments: tuple[bytes, ...], op: str, actor: str | None,
                 reason: str | None, format: int, writer_field: bytes | None = None,
                 writer_secret: bytes | None = None, /) -> None: ...
    def rows(self, person_id: bytes, recorded_at: int, email: bytes, name: bytes,
             password: bytes | None, wrapped: bytes, verified_at: int | None,
             email_digest: bytes, id_digest: bytes | None, /
             ) -> tuple[bytes, bytes, bytes, bytes, bytes | None]: ...
