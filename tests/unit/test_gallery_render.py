"""The gallery's page and contact sheets from hand-made cards (no Feast): escaping, inline
images, the next-engaged mark, the default instant, frame decoding."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from mspa_features.evaluation.gallery import (
    Card,
    Gallery,
    Hit,
    Image,
    Tile,
    _image,
    default_as_of,
    render_html,
    write_gallery,
)

EVIL = '<script>alert("x")</script>'


def _png(color: tuple[int, int, int], size: int = 8) -> bytes:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.new("RGB", (size, size), color).save(buf, format="PNG")
    return buf.getvalue()


def _gallery() -> Gallery:
    red = Image(mime="image/png", data=_png((255, 0, 0)))
    tiles = [Tile(author_id=f"a{i}", title=f"author {i} {EVIL}", frames=(red,)) for i in range(4)]
    odd = Tile(author_id='a"><b>9', title="no frames here")
    hits = (
        Hit(rank=1, tile=tiles[2], score=0.91, text=f"desc {EVIL}"),
        Hit(rank=2, tile=odd, score=0.52, text=None, next=1),
    )
    return Gallery(
        dataset="toy", feature_set="template", as_of=datetime(2026, 1, 6, 12, tzinfo=UTC),
        k=2, pool=10, notes=[f"note {EVIL}"],
        cards=[
            Card(kind="u2a", query_id="u1", query_text=f"likes {EVIL}", history=tuple(tiles[:2]),
                 history_count=3, hits=hits),
            Card(kind="u2a", query_id="u2", query_text="p", history=(tiles[3],),
                 history_count=1, hits=hits[:1],
                 missed=(Hit(rank=None, tile=tiles[1], score=float("nan"), text=None, next=1),)),
            Card(kind="a2a", query_id="a3", query_text="d", history=(tiles[3],),
                 history_count=None, hits=(Hit(rank=1, tile=tiles[0], score=0.7, text="t",
                                               next=3),)),
        ],
    )


def test_page_escapes_every_text_and_inlines_frames() -> None:
    html = render_html(_gallery())
    assert "<script" not in html and EVIL not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert 'data-author="a&#34;&gt;&lt;b&gt;9"' in html  # an id cannot break out of its attribute
    uri = "data:image/png;base64," + base64.b64encode(_png((255, 0, 0))).decode()
    # u1: 2 history + 1 hit; u2: 1 history + 1 hit + 1 missed; a3: itself + 1 hit
    assert html.count(f'src="{uri}"') == 8
    assert "http://" not in html and "https://" not in html
    assert html.count('<section class="card u2a"') == 2
    assert html.count('<section class="card a2a"') == 1


def test_next_engaged_author_is_marked_in_the_list_or_beside_it() -> None:
    html = render_html(_gallery())
    # u1: retrieved at rank 2; u2: not in the top k, shown apart; a2a: 3 users of its audience
    assert html.count('data-next="1"') == 2 and html.count('data-next="3"') == 1
    assert '<div class="row missed">' in html and 'data-rank=""' in html
    assert "engaged next" in html and "x3" in html


def test_write_gallery_writes_page_sheets_and_json(tmp_path: Path) -> None:
    from PIL import Image as PILImage

    paths = write_gallery(_gallery(), tmp_path / "g")
    sheets = sorted((tmp_path / "g" / "sheets").glob("*.png"))
    assert [p.name for p in sheets] == ["00_u2a_u1.png", "01_u2a_u2.png", "02_a2a_a3.png"]
    for p in sheets:
        with PILImage.open(p) as im:
            assert im.format == "PNG" and im.width > 150
    doc = json.loads(paths["json"].read_text())
    assert [c["query_id"] for c in doc["cards"]] == ["u1", "u2", "a3"]
    assert doc["cards"][1]["missed"][0]["score"] is None  # NaN is not valid JSON
    assert "frames" not in json.dumps(doc["cards"][0]["hits"][0]["tile"])
    assert doc["cards"][0]["frames_shown"] == 3


def test_default_as_of_is_the_80th_percentile_of_positives() -> None:
    ts = pd.to_datetime([f"2026-01-{d:02d} 10:00:00.5" for d in range(1, 11)], utc=True)
    df = pd.DataFrame({"event_timestamp": ts, "label": [1] * 10})
    assert default_as_of(df) == datetime(2026, 1, 8, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="no positive"):
        default_as_of(df.assign(label=0))


def test_frames_are_shown_only_when_their_format_is_known(tmp_path: Path) -> None:
    png = _png((0, 0, 255))
    assert _image({"bytes": png, "path": None}, tmp_path) == Image(mime="image/png", data=png)
    (tmp_path / "f.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(8))
    assert _image({"bytes": None, "path": "f.jpg"}, tmp_path).mime == "image/jpeg"
    assert _image({"bytes": b"not an image", "path": None}, tmp_path) is None
    assert _image({"bytes": None, "path": "missing.png"}, tmp_path) is None
