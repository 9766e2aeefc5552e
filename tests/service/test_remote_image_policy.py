"""The URL parser and the address policy on their own: what is accepted, how it is read."""

from __future__ import annotations

import ipaddress

import pytest

from service.fetching.addresses import refusal
from service.fetching.download import canonical_host
from service.fetching.urls import Target, UrlRefused, parse_url, redirect_target


@pytest.mark.parametrize(
    "url, scheme, host, port, path",
    [
        ("http://example.com/a.jpg", "http", "example.com", 80, "/a.jpg"),
        ("HTTPS://Images.Example.COM:8443/x/y.png?sig=a%2Fb&x=1#frag", "https", "images.example.com", 8443, "/x/y.png?sig=a%2Fb&x=1"),
        ("http://example.com", "http", "example.com", 80, "/"),
        ("http://example.com?x=1", "http", "example.com", 80, "/?x=1"),
        ("http://93.184.216.34:8080/a", "http", "93.184.216.34", 8080, "/a"),
        ("http://[2606:4700:0::1111]/a", "http", "2606:4700::1111", 80, "/a"),
        ("http://xn--bcher-kva.example/b\u00fccher.jpg", "http", "xn--bcher-kva.example", 80, "/b%C3%BCcher.jpg"),
        ("http://cdn_1.example.com./a", "http", "cdn_1.example.com.", 80, "/a"),
    ],
)
def test_plain_urls_are_read_one_way(url, scheme, host, port, path):
    target = parse_url(url)
    assert (target.scheme, target.host, target.port, target.path) == (scheme, host, port, path)


def test_ip_literals_carry_their_address_and_names_do_not():
    assert parse_url("http://93.184.216.34/").address == ipaddress.ip_address("93.184.216.34")
    assert parse_url("http://[::ffff:7f00:1]/").address == ipaddress.ip_address("::ffff:127.0.0.1")
    assert parse_url("http://example.com/").address is None


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://b\u00fccher.example/", "xn--"),
        ("http://exa_mple..com/", "not a valid host name"),
        ("http://-bad.example.com/", "not a valid host name"),
        ("http://" + "a" * 64 + ".com/", "not a valid host name"),
        ("http://1.2.3.4.5/", "unusual spelling"),
        ("http://1.2.3.256/", "unusual spelling"),
        ("http://example.com/\x00", "control characters"),
        ("http://example.com/" + "a" * 9000, "longer than 8192"),
        ("http://[1::2::3]/", "not a valid IPv6 address"),
        ("http://[::1]x/", "not a plain IPv6 address"),
        ("http://:80/", "has no host"),
    ],
)
def test_odd_spellings_are_refused_not_guessed(url, reason):
    with pytest.raises(UrlRefused) as caught:
        parse_url(url)
    assert reason in caught.value.reason


def test_redirects_resolve_against_the_current_url_and_are_parsed_as_strictly():
    here = parse_url("https://example.com:8443/dir/a.jpg?x=1")
    assert redirect_target(here, "b.jpg").url == "https://example.com:8443/dir/b.jpg"
    assert redirect_target(here, "/c.jpg").url == "https://example.com:8443/c.jpg"
    assert redirect_target(here, "//cdn.example.org/d.jpg").url == "https://cdn.example.org/d.jpg"
    assert redirect_target(here, "http://10.0.0.1/").address == ipaddress.ip_address("10.0.0.1")
    for location in ("", "http://2130706433/", "file:///etc/passwd", "http://a\\@b/", "gopher://x/"):
        with pytest.raises(UrlRefused):
            redirect_target(here, location)


@pytest.mark.parametrize("location", ["//[abc", "http://[::1", "//]x["])
def test_a_location_urllib_cannot_split_is_refused_not_a_value_error(location):
    """Found by fuzzing (fuzz/targets.py, image_url): urljoin raised a bare ValueError ("Invalid
    IPv6 URL"), which the downloader reported as a bug of ours."""
    with pytest.raises(UrlRefused, match="malformed"):
        redirect_target(parse_url("https://example.com/a.jpg"), location)


def test_origin_leaves_out_the_path_which_may_carry_tokens():
    assert parse_url("https://example.com/a.jpg?token=secret").origin == "https://example.com"
    assert Target("http", "::1", None, 8080, "/x").origin == "http://[::1]:8080"


@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700::1111", "2a00:1450:4001::200e", "::ffff:8.8.8.8",
     "64:ff9b::808:808", "2002:808:808::1"],
)
def test_public_addresses_are_allowed(address):
    assert refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "address, why",
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("10.255.0.1", "private network"),
        ("172.31.255.255", "private network"),
        ("192.168.0.1", "private network"),
        ("100.127.255.255", "shared carrier-grade NAT network"),
        ("100.100.100.200", "cloud metadata service"),
        ("169.254.169.254", "cloud metadata service"),
        ("169.254.0.1", "link-local"),
        ("0.0.0.0", "'this network' / unspecified"),
        ("0.1.2.3", "'this network' / unspecified"),
        ("192.0.0.9", "IETF protocol assignments"),  # a "global" exception in ipaddress, refused here
        ("192.0.2.1", "documentation network"),
        ("198.19.255.255", "benchmarking network"),
        ("224.0.0.251", "multicast"),
        ("239.255.255.250", "multicast"),
        ("255.255.255.255", "reserved / broadcast"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("::ffff:10.0.0.1", "private network"),
        ("::10.0.0.1", "IPv4-compatible (deprecated)"),
        ("fd00:ec2::254", "cloud metadata service"),
        ("fd12:3456::1", "unique local network"),
        ("fe80::1", "link-local"),
        ("fec0::1", "site-local (deprecated)"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "documentation network"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo tunnel"),
        ("64:ff9b::a9fe:a9fe", "it carries 169.254.169.254: cloud metadata service"),
        ("64:ff9b:1::1", "local-use NAT64"),
        ("2002:c0a8:101::1", "it carries 192.168.1.1: private network"),
        ("100::1", "discard-only"),
    ],
)
def test_internal_and_special_addresses_are_refused_with_a_reason(address, why):
    assert refusal(ipaddress.ip_address(address)) == why


def test_allow_list_entries_are_written_like_parsed_hosts():
    assert canonical_host(" LocalHost ") == "localhost"
    assert canonical_host("[0:0::1]") == "::1"
    assert canonical_host("127.0.0.1") == parse_url("http://127.0.0.1/").host


def test_url_fetch_settings_from_the_environment():
    from service.config import Settings

    default = Settings.from_environ({})
    assert (default.url_fetch_timeout_s, default.url_fetch_concurrency, default.url_fetch_allow_hosts) == (10.0, 8, ())
    settings = Settings.from_environ(
        {
            "CLEARBG_URL_FETCH_TIMEOUT_S": "2.5",
            "CLEARBG_URL_FETCH_CONCURRENCY": "3",
            "CLEARBG_URL_FETCH_ALLOW_HOSTS": " 127.0.0.1, localhost ,,",
        }
    )
    assert (settings.url_fetch_timeout_s, settings.url_fetch_concurrency) == (2.5, 3)
    assert settings.url_fetch_allow_hosts == ("127.0.0.1", "localhost")
    for name, value in (("CLEARBG_URL_FETCH_TIMEOUT_S", "0"), ("CLEARBG_URL_FETCH_TIMEOUT_S", "nan"),
                        ("CLEARBG_URL_FETCH_TIMEOUT_S", "ten"), ("CLEARBG_URL_FETCH_CONCURRENCY", "0")):
        with pytest.raises(ValueError, match=name):
            Settings.from_environ({name: value})
