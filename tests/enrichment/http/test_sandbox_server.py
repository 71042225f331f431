"""The sandbox over real sockets: fixtures served as indexed, realistic refusals, the stateful
Cloudflare store, image URLs that resolve locally, the control API, and `python -m pgjobs.enrichment.sandbox`."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
from importlib import resources
from pathlib import Path

import httpx
import pytest
from sandbox_support import COLLISION_COURSE, ELLA_AND_LOUIS, USER_AGENT

from pgjobs.enrichment.sandbox import SandboxServer
from pgjobs.enrichment.sandbox.images import rewrite_urls

FIXTURES = resources.files("pgjobs.enrichment.sandbox") / "fixtures"
REPO = Path(__file__).resolve().parents[3]
UA = {"User-Agent": USER_AGENT}
DISCOGS_AUTH = {"Authorization": "Discogs token=sandbox-discogs-token", **UA}
CF_AUTH = {"Authorization": "Bearer sandbox-cloudflare-token"}


@pytest.fixture
def http(sandbox: SandboxServer):
    with httpx.Client(base_url=sandbox.url, trust_env=False, headers=UA, timeout=5) as client:
        yield client


def fixture_bytes(api: str, name: str) -> bytes:
    return (FIXTURES / api / name).read_bytes()


def test_bodies_byte_for_byte_with_index_status_and_headers() -> None:
    with SandboxServer(rewrite_urls=False) as sandbox, httpx.Client(trust_env=False, headers=DISCOGS_AUTH) as http:
        response = http.get(f"{sandbox.url}/discogs/artists/29735")
        assert response.status_code == 200
        assert response.content == fixture_bytes("discogs", "artist_29735_coldplay.json")
        assert response.headers["X-Discogs-Ratelimit-Used"] == "5"
        assert response.headers["Content-Type"] == "application/json"
        mb = http.get(f"{sandbox.url}/musicbrainz/ws/2/release/{COLLISION_COURSE}", params={"fmt": "json"})
        assert mb.content == fixture_bytes("musicbrainz", "release_collision_course_two_credits.json")
        assert mb.headers["Content-Type"] == "application/json; charset=utf-8"


def test_rewriting_only_changes_upstream_urls(sandbox: SandboxServer, http: httpx.Client) -> None:
    body = http.get("/discogs/artists/29735", headers=DISCOGS_AUTH).content
    original = fixture_bytes("discogs", "artist_29735_coldplay.json")
    assert body == rewrite_urls(original, sandbox.url)
    assert b"https://i.discogs.com/" not in body
    assert b"https://www.discogs.com/artist/29735-Coldplay" in body  # web pages stay as they are


@pytest.mark.skipif(not (REPO.parent / "shared" / "fixtures").is_dir(), reason="shared/ is not beside the repo")
def test_shipped_fixtures_are_the_shared_ones() -> None:
    shared = REPO.parent / "shared" / "fixtures"
    for path in shared.glob("*/*.json"):
        if path.name != "index.json":  # index.json files gain the sandbox's own entries
            assert fixture_bytes(path.parent.name, path.name) == path.read_bytes(), path


def test_musicbrainz_refusals(http: httpx.Client) -> None:
    missing = http.get("/musicbrainz/ws/2/release/00000000-1111-2222-3333-444444444444", params={"fmt": "json"})
    assert missing.status_code == 404
    assert missing.content == fixture_bytes("musicbrainz", "error_404_not_found.json")
    assert http.get("/musicbrainz/ws/2/release/not-a-uuid").json()["error"] == "Invalid mbid."
    bad_inc = http.get(f"/musicbrainz/ws/2/release/{COLLISION_COURSE}", params={"inc": "coffee"})
    assert bad_inc.status_code == 400 and "coffee is not a valid inc" in bad_inc.json()["error"]
    anonymous = http.get(f"/musicbrainz/ws/2/release/{COLLISION_COURSE}", headers={"User-Agent": "python-httpx/0.28"})
    assert anonymous.status_code == 403


def test_musicbrainz_search_miss_is_an_empty_200(http: httpx.Client) -> None:
    response = http.get("/musicbrainz/ws/2/release-group", params={"query": 'releasegroup:"Nothing Here"'})
    assert response.status_code == 200
    assert response.json()["count"] == 0 and response.json()["release-groups"] == []


def test_musicbrainz_opt_in_rate_limit() -> None:
    with SandboxServer(musicbrainz_min_interval=60) as sandbox, httpx.Client(trust_env=False, headers=UA) as http:
        url = f"{sandbox.url}/musicbrainz/ws/2/artist/cc197bad-dc9c-440d-a5b5-d52ba2e14234"
        assert http.get(url).status_code == 200
        throttled = http.get(url)
        assert throttled.status_code == 503 and throttled.headers["Retry-After"] == "1"
        assert "allowable rate limit" in throttled.json()["error"]


def test_cover_art_redirects_to_a_local_image(sandbox: SandboxServer, http: httpx.Client) -> None:
    front = http.get(f"/coverartarchive/release/{COLLISION_COURSE}/front-250")
    assert front.status_code == 307
    assert front.headers["Location"].startswith(f"{sandbox.url}/_img/archive.org/download/mbid-{COLLISION_COURSE}/")
    assert front.headers["Location"].endswith("-9473182611_thumb250.jpg")
    image = http.get(front.headers["Location"])
    assert image.headers["Content-Type"] == "image/jpeg" and image.content.startswith(b"\xff\xd8\xff")
    listing = http.get(f"/coverartarchive/release/{COLLISION_COURSE}").json()
    thumb = http.get(listing["images"][0]["thumbnails"]["500"], follow_redirects=True)
    assert thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/jpeg"
    no_art = http.get(f"/coverartarchive/release/{ELLA_AND_LOUIS}/front")
    assert (no_art.status_code, no_art.text) == (404, "Not Found")
    assert http.get("/coverartarchive/release/not-a-uuid").status_code == 400


def test_images_outside_the_fixtures_are_404(http: httpx.Client) -> None:
    assert http.get("/_img/i.discogs.com/edited-signature/A-29735.jpeg").status_code == 404
    assert http.get("/_img/i.scdn.co/image/ab67616d0000b273ec269c4766bd515d0faf4a56").status_code == 200


def test_discogs_auth(http: httpx.Client) -> None:
    params = {"q": "Coldplay", "type": "artist", "per_page": "5"}
    anonymous = http.get("/discogs/database/search", params=params)
    assert anonymous.status_code == 401
    assert anonymous.content == fixture_bytes("discogs", "error_401_search_requires_auth.json")
    wrong = http.get("/discogs/database/search", params=params, headers={"Authorization": "Discogs token=nope"})
    assert wrong.status_code == 401
    assert len(http.get("/discogs/database/search", params=params, headers=DISCOGS_AUTH).json()["results"]) == 5
    assert "images" not in http.get("/discogs/artists/29735").json()  # images only for authenticated callers
    assert http.get("/discogs/artists/999999999", headers=DISCOGS_AUTH).json() == {"message": "Artist not found."}


def test_cloudflare_store_is_stateful(sandbox: SandboxServer, http: httpx.Client) -> None:
    api = "/cloudflare/client/v4/accounts/sandbox-account/images/v1"
    source = http.get("/discogs/artists/29735", headers=DISCOGS_AUTH).json()["images"][0]["uri"]
    form = {"url": (None, source), "id": (None, "pgjobs/artist/discogs-29735"), "metadata": (None, '{"source":"discogs"}')}
    first = http.post(api, files=form, headers=CF_AUTH)
    assert first.status_code == 200, first.text
    result = first.json()["result"]
    assert result["id"] == "pgjobs/artist/discogs-29735" and result["filename"] == "NzM3Mi5qcGVn.jpeg"
    assert result["meta"] == {"source": "discogs"}
    assert http.get(result["variants"][0]).headers["Content-Type"] == "image/jpeg"
    again = http.post(api, files=form, headers=CF_AUTH)
    assert again.status_code == 409 and again.json()["errors"][0]["code"] == 5409
    assert sandbox.uploads() == ["pgjobs/artist/discogs-29735"]
    details = http.get(f"{api}/pgjobs%2Fartist%2Fdiscogs-29735", headers=CF_AUTH)
    assert details.json()["result"]["variants"] == result["variants"]


def test_cloudflare_refusals(http: httpx.Client) -> None:
    api = "/cloudflare/client/v4/accounts/sandbox-account/images/v1"
    missing = http.post(api, files={"url": (None, http.base_url.join("/_img/i.discogs.com/gone.jpeg").__str__()),
                                    "id": (None, "pgjobs/x")}, headers=CF_AUTH)
    assert missing.status_code == 400 and missing.json()["errors"][0]["code"] == 5400
    not_image = http.post(api, files={"file": ("a.txt", b"hello", "text/plain")}, headers=CF_AUTH)
    assert not_image.json()["errors"][0]["code"] == 5455
    bad_token = http.post(api, files={"url": (None, "https://example.org/a.jpg")},
                          headers={"Authorization": "Bearer wrong"})
    assert bad_token.status_code == 403 and bad_token.json()["errors"][0]["code"] == 10000
    raw = http.post(api, content=b"\xff\xd8\xff", headers={**CF_AUTH, "Content-Type": "image/jpeg"})
    assert raw.json()["errors"][0]["code"] == 5415
    unknown = http.get(f"{api}/nope", headers=CF_AUTH)
    assert unknown.status_code == 404 and unknown.json()["errors"][0]["code"] == 5404


def test_spotify_token_and_bearer(http: httpx.Client) -> None:
    token_url = "/spotify-accounts/api/token"
    good = http.post(token_url, data={"grant_type": "client_credentials"},
                     auth=("sandbox-spotify-client", "sandbox-spotify-secret"))
    assert good.status_code == 200 and good.json()["token_type"] == "Bearer"
    bad = http.post(token_url, data={"grant_type": "client_credentials"}, auth=("sandbox-spotify-client", "x"))
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_client"
    tracks = "/spotify-api/v1/albums/176VGwd7ODjJVxT0DkQA7A/tracks"
    assert http.get(tracks).json() == {"error": {"status": 401, "message": "No token provided"}}
    assert http.get(tracks, headers={"Authorization": "Bearer old"}).status_code == 401
    ok = http.get(tracks, headers={"Authorization": f"Bearer {good.json()['access_token']}"})
    assert ok.status_code == 200 and ok.json()["total"] == 11
    too_many = http.get("/spotify-api/v1/search", params={"q": "x", "type": "album", "limit": 20},
                        headers={"Authorization": f"Bearer {good.json()['access_token']}"})
    assert too_many.status_code == 400


def test_control_api_faults_and_recording(sandbox: SandboxServer, http: httpx.Client) -> None:
    created = http.post("/_sandbox/faults", json={"match": "/musicbrainz/ws/2/release/", "status": 503,
                                                  "retry_after": 2, "times": 1})
    assert created.status_code == 201 and created.json()["kind"] == "status"
    url = f"/musicbrainz/ws/2/release/{COLLISION_COURSE}"
    throttled = http.get(url, headers={"Authorization": "Bearer very-secret"})
    assert throttled.status_code == 503 and throttled.headers["Retry-After"] == "2"
    assert throttled.content == fixture_bytes("musicbrainz", "error_503_rate_limited.json")
    assert http.get(url).status_code == 200  # spent after one use
    records = http.get("/_sandbox/requests").json()
    assert [r["status"] for r in records] == [503, 200]
    assert records[0]["outcome"] == "fault:status"
    assert records[0]["headers"]["authorization"] == "Bearer REDACTED"
    assert "very-secret" not in json.dumps(records)
    assert records[0]["monotonic"] <= records[1]["monotonic"] and records[0]["wall_iso"].endswith("+00:00")
    assert http.post("/_sandbox/faults", json={"match": "/x", "kind": "bogus"}).status_code == 400
    http.post("/_sandbox/faults", json={"match": "/discogs/", "kind": "html"})
    assert http.get("/_sandbox/faults").json()[0]["status"] == 502
    assert http.delete("/_sandbox/faults").status_code == 204 and sandbox.faults() == []
    assert http.delete("/_sandbox/requests").status_code == 204 and sandbox.requests() == []


def test_query_credentials_are_redacted_in_the_recording(sandbox: SandboxServer, http: httpx.Client) -> None:
    http.get("/discogs/database/search", params={"q": "Coldplay", "type": "artist", "token": "sandbox-discogs-token"})
    (record,) = sandbox.requests()
    assert record["params"]["token"] == ["REDACTED"] and "sandbox-discogs-token" not in json.dumps(record)


def test_fault_kinds_over_the_wire(sandbox: SandboxServer, http: httpx.Client) -> None:
    url = "/musicbrainz/ws/2/artist/cc197bad-dc9c-440d-a5b5-d52ba2e14234"
    sandbox.add_fault(url, kind="truncated", times=1)
    truncated = http.get(url)
    assert truncated.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(truncated.content)
    sandbox.add_fault(url, kind="html", status=200, times=1)
    assert http.get(url).text.startswith("<!DOCTYPE html>")
    sandbox.add_fault(url, kind="reset", times=1)
    with pytest.raises(httpx.TransportError):
        http.get(url)
    sandbox.add_fault(url, kind="delay", delay=5, times=1)
    with pytest.raises(httpx.ReadTimeout):
        http.get(url, timeout=0.2)
    assert http.get(url).status_code == 200


def test_python_m_sandbox_serves_and_stops_on_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "pgjobs.enrichment.sandbox", "--port", "0"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            assert selector.select(timeout=15), "no 'listening' line within 15 s"
        line = proc.stdout.readline().strip()
        assert line.startswith("sandbox listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        assert httpx.get(f"{url}/_sandbox/health", trust_env=False).json()["ok"] is True
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
