"""The studio's HTTP handlers, in process (fastapi.testclient): every page and endpoint, path confinement to
RUNS_DIR, escaping of run text, the JSON-only write rule and the localhost Host check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from alignkit.data.io import read_records  # noqa: E402
from alignkit.studio.app import create_app  # noqa: E402
from studio_fixture import SCRIPT, Server, make_runs  # noqa: E402


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    return make_runs(tmp_path / "runs")


@pytest.fixture()
def client(root: Path) -> TestClient:
    return TestClient(create_app(root))


def test_index_lists_runs_with_kind_and_headline_interval(client: TestClient) -> None:
    page = client.get("/").text
    for name in ("base", "tuned", "train/dpo"):
        assert f'data-run="{name}"' in page
    assert "67.0% [47.0, 87.0]" in page  # tuned's constraint accuracy with its interval
    assert 'class="kind kind-train">train' in page


def test_run_page_shows_config_metrics_curves_and_types(client: TestClient) -> None:
    page = client.get("/runs/base").text
    assert "Constraint accuracy by type" in page and "punctuation:no_comma" in page and "33.3%" in page
    assert "prompts:" in page  # the config
    train = client.get("/runs/train/dpo").text
    assert "Training curves" in train and "data:image/png;base64," in train
    assert "tok 500" in train  # compute: the 5 steps' tokens summed, not the last step's 100


def test_sample_browser_side_by_side_filters_and_diff(client: TestClient) -> None:
    page = client.get("/samples", params={"run": ["base", "tuned"]}).text
    assert page.count('<tr class="sample"') == 6
    assert "the cat is soft and warm." in page and "The Cat is soft." in page
    assert "✗ change_case:english_lowercase" in page and "✓ change_case:english_lowercase" in page
    assert "finish eos" in page and "forward_tokens 30" in page
    changed = client.get("/samples", params={"run": ["base", "tuned"], "changed": 1}).text
    assert changed.count('<tr class="sample"') == 5 and 'data-key="p4"' not in changed
    failed = client.get("/samples", params={"run": ["base", "tuned"], "constraint": "punctuation:no_comma",
                                            "status": "failed"}).text
    assert [k for k in ("p0", "p1", "p2", "p3", "p4", "p5") if f'data-key="{k}"' in failed] == ["p1", "p3", "p4"]
    diff = client.get("/samples", params={"run": ["base", "tuned"], "diff": 1}).text
    assert "<del>A lake is calm.</del><ins>The river runs fast.</ins>" in diff


def test_completions_are_escaped(client: TestClient) -> None:
    page = client.get("/samples", params={"run": ["base"]}).text
    assert SCRIPT not in page
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in page


@pytest.mark.parametrize("path", ["/runs/../secret", "/runs/..%2fsecret", "/runs/%2e%2e/%2e%2e/etc",
                                  "/runs/%2Fetc", "/runs/base/..%2F..%2Fsecret", "/tasks/..%2fx",
                                  "/samples?run=../secret", "/static/../app.py", "/static/%2e%2e/app.py"])
def test_no_path_outside_the_root_is_readable(client: TestClient, root: Path, path: str) -> None:
    (root.parent / "secret").mkdir(exist_ok=True)
    (root.parent / "secret" / "eval.json").write_text('{"method": "TOPSECRET"}')
    res = client.get(path)
    assert res.status_code in (400, 404)
    assert "TOPSECRET" not in res.text and "def create_app" not in res.text


def test_writes_need_json_and_a_local_host(root: Path) -> None:
    client = TestClient(create_app(root))
    assert client.post("/api/tasks", data={"name": "x"}).status_code == 415  # a cross-site form cannot do this
    remote = TestClient(create_app(root), base_url="http://evil.example")
    assert remote.get("/").status_code == 403
    assert TestClient(create_app(root, local_only=False), base_url="http://evil.example").get("/").status_code == 200


def test_task_labelling_progress_agreement_and_export_endpoints(client: TestClient) -> None:
    res = client.post("/api/tasks", json={"name": "prefs", "runs": ["base", "tuned"]})
    assert res.status_code == 200 and res.json()["items"] == 5
    assert client.post("/api/tasks", json={"name": "prefs", "runs": ["base", "tuned"]}).status_code == 400
    assert "prefs" in client.get("/").text
    for who in ("ann", "bob"):
        for _ in range(5):
            item = client.get("/api/tasks/prefs/next", params={"annotator": who}).json()["item"]
            letter = next(k for k, v in item["completions"].items() if v != "Hello world." and v in (
                "the cat is soft and warm.", "The river runs fast.", "rain falls softly.", "hello friend " + SCRIPT,
                "Hello, world."))  # any fixed rule: both annotators agree
            ans = client.post("/api/tasks/prefs/answer", json={"annotator": who, "item_id": item["id"],
                                                                "answer": letter, "critique": ""})
            assert ans.status_code == 200, ans.text
    assert client.get("/api/tasks/prefs/next", params={"annotator": "ann"}).json() == {"item": None}
    page = client.get("/tasks/prefs").text
    assert 'data-annotator="ann"' in page and "1.000" in page  # raw agreement 1
    label = client.get("/tasks/prefs/label", params={"annotator": "ann"}).text
    assert 'id="all-done"' in label
    fresh = client.get("/tasks/prefs/label", params={"annotator": "cy"}).text
    assert 'id="labeller"' in fresh and "&lt;script&gt;" not in fresh or SCRIPT not in fresh
    bad = client.post("/api/tasks/prefs/answer", json={"annotator": "ann", "item_id": 1, "answer": "Z"})
    assert bad.status_code == 400 and "expected one of" in bad.json()["error"]
    out = client.get("/tasks/prefs/export", params={"kind": "pairwise"})
    assert out.status_code == 200 and "attachment" in out.headers["content-disposition"]
    rows = [json.loads(line) for line in out.text.splitlines()]
    assert len(rows) == 5 and {"prompt", "chosen", "rejected"} <= set(rows[0])
    assert client.get("/tasks/nope").status_code == 404


def test_prompts_task_samples_on_demand_once(root: Path, tmp_path: Path) -> None:
    calls = []

    class FakeSample:
        def __init__(self, text: str) -> None:
            self.text, self.finish_reason = text, "eos"

    class FakeSampler:
        def sample(self, prompts, n, max_new_tokens, temperature, seed):  # the Sampler protocol's call
            calls.append((prompts, n, seed))
            return [[FakeSample(f"answer {j} to {prompts[0]}") for j in range(n)]]

    client = TestClient(create_app(root, sampler_for=lambda model: FakeSampler()))
    res = client.post("/api/tasks", json={"name": "od", "prompts": str(root / "prompts.jsonl"), "model": "m", "k": 3,
                                          "limit": 2})
    assert res.json()["items"] == 2
    page = client.get("/tasks/od/label", params={"annotator": "ann"}).text
    assert page.count('class="option"') == 3 and "answer 2 to Describe a cat" in page
    client.get("/tasks/od/label", params={"annotator": "bob"})
    assert len(calls) == 1  # sampled once, then stored for every annotator
    item = client.get("/api/tasks/od/next", params={"annotator": "ann"}).json()["item"]
    assert client.post("/api/tasks/od/answer", json={"annotator": "ann", "item_id": item["id"], "answer": "C",
                                                     "critique": "B rambles"}).status_code == 200
    path = tmp_path / "cut.jsonl"
    path.write_text(client.get("/tasks/od/export", params={"kind": "judged"}).text)
    assert len(read_records(path, kind="judged").records) == 3


def test_the_printed_url_accepts_a_connection_at_once(tmp_path: Path) -> None:
    """The socket listens before `alignkit studio` prints its URL, so a browser opened on the URL is never refused
    while the server is still starting (it happened on a loaded machine)."""
    import socket

    server = Server(make_runs(tmp_path / "runs"))
    try:
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
    finally:
        server.kill()
