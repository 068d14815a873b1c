"""FRAMEFLEET_REDIS_URL parsing: one server or a Sentinel group, and the Celery broker each becomes."""

from __future__ import annotations

from pathlib import Path

import pytest

from framefleet.cli.supervisor import EmbeddedStack, StackError, run_up
from framefleet.config import Settings
from framefleet.redis_url import RedisTarget, celery_broker, parse_redis_url


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://:pw@r.example:6380/1", "unix:///r.sock"])
def test_plain_urls_pass_through_to_redis_py(url: str) -> None:
    target = parse_redis_url(url)
    assert target == RedisTarget(url=url)
    assert not target.is_sentinel
    assert celery_broker(target) == (url, {})


def test_a_sentinel_url_names_every_sentinel_the_master_and_the_database() -> None:
    target = parse_redis_url("redis+sentinel://:s%40cret@10.0.0.1:26380,sentinel-b,[fd00::3]:26381/ff/2")
    assert target.is_sentinel
    assert target.sentinels == (("10.0.0.1", 26380), ("sentinel-b", 26379), ("fd00::3", 26381))
    assert (target.master, target.db, target.username, target.password) == ("ff", 2, None, "s@cret")
    assert target.sentinel_password is None


def test_database_defaults_to_0_and_username_and_sentinel_password_are_read() -> None:
    target = parse_redis_url("redis+sentinel://app:p+w@h1:1,h2:2/main?sentinel_password=s+p%21")
    assert (target.db, target.username, target.password) == (0, "app", "p+w")
    assert target.sentinel_password == "s+p!"


def test_celery_gets_one_sentinel_url_per_sentinel_and_the_master_in_transport_options() -> None:
    url, options = celery_broker(parse_redis_url("redis+sentinel://:p%3Bw@h1:1,[fd00::2]:2/ff/3"))
    assert url == "sentinel://:p%3Bw@h1:1/3;sentinel://:p%3Bw@[fd00::2]:2/3"
    assert options == {"master_name": "ff"}
    _, options = celery_broker(parse_redis_url("redis+sentinel://h1/ff?sentinel_password=x"))
    assert options == {"master_name": "ff", "sentinel_kwargs": {"password": "x"}}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h:1/0", "must start with"),
        ("redis+sentinel://h1:1,h2:2", "master's name"),
        ("redis+sentinel://h1:1/", "master's name"),
        ("redis+sentinel://h1:1/ff/x", "path must be"),
        ("redis+sentinel://h1:1/ff/0/more", "path must be"),
        ("redis+sentinel://h1:1,,h2/ff", "empty"),
        ("redis+sentinel://h1:99999/ff", "bad port"),
        ("redis+sentinel://h1:port/ff", "bad port"),
        ("redis+sentinel://[fd00::1/ff", "bad Sentinel address"),
        ("redis+sentinel://h1/ff?master=x", "unknown option"),
    ],
)
def test_malformed_urls_are_refused_saying_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_redis_url(url)


def test_settings_refuse_to_start_on_a_malformed_redis_url() -> None:
    with pytest.raises(ValueError, match="master's name"):
        Settings(redis_url="redis+sentinel://h1:26379")
    assert Settings(redis_url="redis+sentinel://h1:26379/ff/0").redis_url.endswith("/ff/0")


def test_the_embedded_stack_refuses_a_sentinel_url_it_cannot_run(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, redis_url="redis+sentinel://h1:26379/ff/0")
    with pytest.raises(StackError, match="runs its own Redis"):
        EmbeddedStack(settings)
    assert run_up(settings) == 1
