"""How image configs write their times (engine.tarstream)."""

from __future__ import annotations

import pytest


def test_image_times_are_written_as_go_writes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from moorage.engine import tarstream

    for ns, text in [
        (1_700_000_000_115_212_440, "2023-11-14T22:13:20.11521244Z"),
        (1_700_000_000_000_000_000, "2023-11-14T22:13:20Z"),
        (1_700_000_000_000_000_001, "2023-11-14T22:13:20.000000001Z"),
    ]:
        monkeypatch.setattr(tarstream.time, "time_ns", lambda ns=ns: ns)
        assert tarstream.now_rfc3339() == text
