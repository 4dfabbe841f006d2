from __future__ import annotations

from peoplelog.ledger import Ledger


def test_create_and_read(ledger: Ledger) -> None:
    ref = ledger.create_person(email="smoke@example.org", name="Smoke")
    assert ref.version == 0
    assert ledger.get_person(ref.person_id).name == "Smoke"


def test_cli_create(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("person", "create", "--email", "cli@example.org", "--name", "C", "--json")
    assert result.code == 0, result.stderr
    assert result.json["version"] == 0
