"""Search by image: the image index (vectors keyed by note id), POST /v1/search/image, the
`notefeed search-images` command, and the OpenCLIP path with a tiny model built here."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from notefeed.search import SearchError
from notefeed.search.image import ImageIndex, check_vector, encode_note_images
from notefeed.serve.engine import Engine
from tests.search.conftest import AUTH, served_search

E = np.eye(4, dtype=np.float32)


def test_index_best_image_per_note_and_round_trip(tmp_path: Path) -> None:
    idx = ImageIndex(4)
    # n0 has two images (one near axis 0, one on axis 1); n1 sits between axes 0 and 2
    idx.add(["n0", "n0", "n1", "n2"], np.stack([E[0] + 0.1 * E[3], E[1], E[0] + E[2], E[3]]))
    got = idx.search([1, 0, 0, 0], 3)
    assert [n for n, _ in got] == ["n0", "n1", "n2"] and got[0][1] == pytest.approx(1 / np.sqrt(1.01), 1e-5)
    assert [n for n, _ in idx.search([0, 1, 0, 0], 1)] == ["n0"]  # its second image
    assert len(idx) == 4 and idx.n_notes == 3
    idx.save(tmp_path / "img")
    back = ImageIndex.load(tmp_path / "img")
    assert back.note_ids == idx.note_ids and back.search([1, 0, 0, 0], 3) == got
    assert back.encoder is None


@pytest.mark.parametrize("v, msg", [([1, 0, 0], "expected 4 numbers"), ([[1, 0, 0, 0]], "flat list"),
                                    ([0, 0, 0, 0], "all zeros"), ([1, float("nan"), 0, 0], "NaN"),
                                    ("abcd", "list of 4 numbers")])
def test_bad_query_vectors(v: object, msg: str) -> None:
    with pytest.raises(SearchError, match=f"^vector: .*{msg}"):
        check_vector(v, 4)


def test_bad_index_rows_and_files(tmp_path: Path) -> None:
    idx = ImageIndex(4)
    with pytest.raises(SearchError, match="all zeros"):
        idx.add(["a"], np.zeros((1, 4)))
    with pytest.raises(SearchError, match=r"shape \(n, 4\)"):
        idx.add(["a"], np.ones((1, 3)))
    with pytest.raises(SearchError, match="2 ids for 1 vectors"):
        idx.add(["a", "b"], np.ones((1, 4)))
    with pytest.raises(SearchError, match="no image index"):
        ImageIndex.load(tmp_path / "none")
    idx.add(["a"], np.ones((1, 4)))
    idx.save(tmp_path / "x")
    meta = json.loads((tmp_path / "x" / "images.json").read_text())
    (tmp_path / "x" / "images.json").write_text(json.dumps({**meta, "note_ids": ["a", "b"]}))
    with pytest.raises(SearchError, match="does not match 2 note ids"):
        ImageIndex.load(tmp_path / "x")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Engine, TestClient]]:
    ev = pd.DataFrame({"user_id": ["u"] * 2, "note_id": ["n0", "n1"], "ts": range(2), "type": "like"})
    with served_search(tmp_path, ev, "search-image") as ec:
        yield ec


def _post(c: TestClient, body: dict) -> object:
    return c.post("/v1/search/image", json=body, headers=AUTH)


def test_image_search_endpoint(served: tuple[Engine, TestClient], tmp_path: Path) -> None:
    e, c = served
    r = _post(c, {"vector": [1, 0, 0, 0]})
    assert r.status_code == 409 and "no image index" in r.json()["detail"]
    # build it with the command, from precomputed vectors keyed by note id
    from safetensors.numpy import save_file
    from typer.testing import CliRunner

    from notefeed.cli import app

    save_file({"vectors": np.stack([E[0], E[1], E[0] + E[1], E[2]])}, str(tmp_path / "v.safetensors"))
    (tmp_path / "ids.json").write_text(json.dumps(["n3", "n6", "n9", "not-in-catalogue"]))
    res = CliRunner().invoke(app, ["search-images", "--workspace", str(e.workspace), "--vectors",
                                   str(tmp_path / "v.safetensors"), "--ids", str(tmp_path / "ids.json")])
    assert res.exit_code == 0, res.output
    assert "4 images of 4 notes, dim 4" in res.output
    r = _post(c, {"vector": [1, 0.1, 0, 0], "n": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [it["note_id"] for it in body["items"]] == ["n3", "n9"] and body["dim"] == 4
    assert body["items"][0]["title"] == "Espresso machine guide" and body["items"][0]["score"] > body["items"][1]["score"]
    r = _post(c, {"vector": [0, 0, 1, 0], "n": 1}).json()
    assert r["items"] == [{"note_id": "not-in-catalogue", "score": pytest.approx(1.0)}]
    # a note taken down is never an answer; the page is still full from the next ones
    assert c.delete("/v1/notes/n3", headers=AUTH).status_code == 200
    r = _post(c, {"vector": [1, 0.1, 0, 0], "n": 2}).json()
    assert [it["note_id"] for it in r["items"]] == ["n9", "n6"]
    # bad input: 422 naming the field
    for body, field in [({"vector": [1, 0, 0]}, "vector"), ({"vector": [0, 0, 0, 0]}, "vector"),
                        ({}, "vector"), ({"vector": [1, 0, 0, 0], "image": "aGk="}, "vector"),
                        ({"image": "not base64!"}, "image"), ({"image": "aGk="}, "image"),
                        ({"vector": [1, 0, 0, 0], "n": 0}, "n"), ({"vector": [1, 0, 0, 0], "n": 500}, "n"),
                        ({"vector": [1, 0, 0, 0], "colour": "red"}, "colour")]:
        r = _post(c, body)
        assert r.status_code == 422, (body, r.text)
        assert field in json.dumps(r.json()), (body, r.text)
    # the index has no encoder: an image query says so
    r = _post(c, {"image": base64.b64encode(b"\x89PNG....").decode()})
    assert r.status_code == 422 and "no image encoder" in r.text
    # a rebuilt index is picked up without a restart
    idx = ImageIndex(2)
    idx.add(["n10"], np.array([[1.0, 0.0]]))
    idx.save(e.workspace / "images")
    r = _post(c, {"vector": [1, 0], "n": 1})
    assert r.status_code == 200 and r.json()["items"][0]["note_id"] == "n10"
    assert _post(c, {"vector": [1, 0, 0, 0]}).status_code == 422


def _png(colour: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 40), colour).save(buf, format="PNG")
    return buf.getvalue()


def test_open_clip_encoder_with_a_tiny_model(served: tuple[Engine, TestClient], tmp_path: Path) -> None:
    """The real OpenCLIP loading path: a tiny architecture registered here, its random weights
    saved as safetensors, loaded by the encoder; the uploaded image finds the note whose image
    file is the same picture."""
    open_clip = pytest.importorskip("open_clip")
    import torch
    from safetensors.torch import save_file

    cfg = {"embed_dim": 8,
           "vision_cfg": {"image_size": 32, "layers": 1, "width": 16, "patch_size": 16, "head_width": 8},
           "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}}
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "nf-tiny-test.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "cfg")
    torch.manual_seed(0)
    model = open_clip.create_model("nf-tiny-test")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "tiny.safetensors"))
    e, c = served
    colours = {"n0": (250, 10, 10), "n1": (10, 250, 10), "n2": (10, 10, 250)}
    (tmp_path / "img").mkdir()
    for n, col in colours.items():
        (tmp_path / "img" / f"{n}.png").write_bytes(_png(col))
    from notefeed.search.image import load_encoder

    spec = {"kind": "open_clip", "model_name": "nf-tiny-test", "checkpoint": str(tmp_path / "tiny.safetensors")}
    idx, missing = encode_note_images(list(colours) + ["n3"], [[f"{n}.png"] for n in colours] + [["gone.png"]],
                                      tmp_path / "img", load_encoder(spec), spec)
    assert idx.dim == 8 and len(idx) == 3 and missing == [str(tmp_path / "img" / "gone.png")]
    idx.save(e.workspace / "images")
    for n, col in colours.items():
        r = _post(c, {"image": base64.b64encode(_png(col)).decode(), "n": 1})
        assert r.status_code == 200, r.text
        assert r.json()["items"][0]["note_id"] == n and r.json()["items"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    bad = _post(c, {"image": base64.b64encode(b"not an image").decode()})
    assert bad.status_code == 422 and "not a readable image" in bad.text


def test_image_query_without_open_clip_is_a_clear_error(tmp_path: Path) -> None:
    from notefeed.search.image import load_encoder

    spec = {"kind": "open_clip", "model_name": "ViT-B-32", "checkpoint": str(tmp_path / "missing.pt")}
    with pytest.raises(SearchError, match="^image: "):
        load_encoder(spec)  # no open_clip here, or no such checkpoint: either way a named error
    with pytest.raises(SearchError, match="unknown image encoder kind"):
        load_encoder({"kind": "magic"})


def test_huge_vector_components_still_give_a_direction() -> None:
    v = check_vector([1e308, 1e308, 0, 0], 4)
    np.testing.assert_allclose(v, [2 ** -0.5, 2 ** -0.5, 0, 0], rtol=1e-6)
