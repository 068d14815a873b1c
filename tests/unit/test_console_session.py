"""The console's session cookie, its single sign-on parts and the quality series thinning (pure)."""

from __future__ import annotations

from framefleet.console.session import SessionCodec, csrf_matches, new_session
from framefleet.jobs.quality_series import series, thin


def test_a_sealed_session_opens_only_with_the_same_secret_and_hides_the_key() -> None:
    codec = SessionCodec("secret-one")
    session = new_session("ff_abc123", via="key")
    value = codec.seal(session)
    assert "ff_abc123" not in value
    assert codec.open(value) == session
    assert SessionCodec("secret-two").open(value) is None
    assert codec.open(value[:-2] + "xx") is None
    assert codec.open("") is None


def test_an_old_session_is_refused() -> None:
    value = SessionCodec("s").seal(new_session("ff_k", via="key"))
    assert SessionCodec("s", max_age_seconds=-1).open(value) is None


def test_csrf_tokens_must_match() -> None:
    assert csrf_matches("token", "token")
    assert not csrf_matches("token", "other")
    assert not csrf_matches("token", None)
    assert not csrf_matches("token", "")


def test_thinning_keeps_each_spans_lowest_score() -> None:
    points = [(float(i), 90.0) for i in range(100)]
    points[37] = (37.0, 12.0)
    thinned = thin(points, 10)
    assert len(thinned) == 10
    assert (37.0, 12.0) in thinned


def test_series_picks_vmaf_first_and_keeps_the_summary() -> None:
    document = {
        "fps": 25,
        "summary": {"worst_segment": {"metric": "vmaf", "start": 0, "end": 2}},
        "frames": [{"frame": i, "time": i / 25, "vmaf": 95.0, "psnr": 40.0} for i in range(3)],
    }
    out = series(document, points=800)
    assert out["metric"] == "vmaf"
    assert out["series"]["psnr"] == [[0.0, 40.0], [0.04, 40.0], [0.08, 40.0]]
    assert out["summary"]["worst_segment"]["end"] == 2


def test_a_single_sign_on_session_ends_with_its_token() -> None:
    import time

    from framefleet.console.session import SessionCodec, new_session

    codec = SessionCodec("secret")
    alive = new_session("a.b.c", via="sso", expires_at=time.time() + 60)
    opened = codec.open(codec.seal(alive))
    assert opened is not None and opened.credential == "a.b.c" and opened.via == "sso"
    assert codec.open(codec.seal(new_session("a.b.c", via="sso", expires_at=time.time() - 1))) is None


def test_pkce_challenge_and_the_sealed_login_state() -> None:
    from urllib.parse import parse_qs, urlsplit

    from framefleet.console import sso

    # RFC 7636, appendix B.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert sso.challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    login = sso.new_login("/console/jobs")
    assert 43 <= len(login.verifier) <= 128
    states = sso.StateCodec("secret")
    assert states.open(states.seal(login)) == login
    assert sso.StateCodec("other secret").open(states.seal(login)) is None
    client = sso.Client("https://idp", "ff", None, "IdP", "openid", None, None)
    url = sso.authorize_url("https://idp/auth?x=1", client=client, login=login, redirect_uri="https://ff/cb")
    query = parse_qs(urlsplit(url).query)
    assert query["x"] == ["1"] and query["code_challenge_method"] == ["S256"]
    assert query["code_challenge"] == [sso.challenge(login.verifier)] and query["state"] == [login.state]
