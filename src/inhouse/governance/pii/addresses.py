"""What makes an address internal: e-mail domains, host names, URLs and IP addresses of the company's own network.

Pure functions over strings (no Presidio here); ``recognizers.py`` turns them into recognisers.

* **E-mail**: any domain. Company mail lives under names no public-suffix list knows (``hr.qinglan.local``,
  ``corp.internal``, ``qinglan-components.example``), so a domain is accepted when its suffix is public, one of
  the non-public suffixes below, or any other alphabetic label that is not a file extension (``icon@2x.png`` is an
  image, ``lodash@4.17.21`` a package version).
* **Host names**: a dotted name ending in a non-public suffix (``db01.qinglan.internal``, ``nas.home.arpa``) or
  under one of the company's own domains (``governance.internal_domains``).
* **URLs**: a URL whose host is internal (such a name, a private, loopback or link-local IP, or a single-label
  name such as ``http://wiki/``), and Windows UNC paths (``\\\\fs01\\finance``). Public URLs are left alone.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

# RFC 6761/6762/8375 and what companies use in practice for names that never resolve on the internet.
INTERNAL_SUFFIXES = frozenset({
    "local", "internal", "corp", "lan", "example", "test", "invalid", "localhost", "localdomain", "intranet",
    "intra", "private", "priv", "home", "home.arpa",
})
# Last labels that name a file rather than a domain (``icon@2x.png``, ``report.final.xlsx``).
FILE_EXTENSIONS = frozenset({
    "png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "tif", "tiff", "js", "mjs", "cjs", "ts", "tsx", "jsx",
    "css", "scss", "less", "html", "htm", "json", "yaml", "yml", "toml", "ini", "cfg", "conf", "py", "pyc", "rb",
    "go", "rs", "java", "kt", "c", "h", "cpp", "hpp", "cs", "php", "sh", "bash", "bat", "ps1", "md", "rst", "txt",
    "log", "csv", "tsv", "xml", "pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "zip", "gz", "tar", "tgz",
    "bz2", "xz", "whl", "jar", "war", "exe", "dll", "so", "dylib", "lock", "sql", "db", "sqlite", "bin", "gguf",
    "onnx", "pt", "wav", "mp3", "mp4", "mov", "avi", "eml", "msg", "ics", "vue", "svelte", "lua", "pl", "r", "swift",
    "dart", "scala", "proto", "tf", "env", "pem", "crt", "key", "cer",
})
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_SCHEME = r"[A-Za-z][A-Za-z0-9+.-]{1,15}"  # any scheme: http, smb, ldaps, mysql (of jdbc:mysql://) …


def _suffix_pattern(suffixes: Iterable[str]) -> str:
    ordered = sorted({s.lower().strip(".") for s in suffixes if s.strip(".")}, key=len, reverse=True)
    return "|".join(re.escape(s) for s in ordered)


def host_pattern(internal_domains: Iterable[str] = ()) -> str:
    """A dotted host name ending in an internal suffix or under one of ``internal_domains`` (case-insensitive)."""
    ends = _suffix_pattern([*INTERNAL_SUFFIXES, *internal_domains])
    return (rf"(?<![A-Za-z0-9_.@-])(?i:(?:{_LABEL}\.)+(?:{ends}))(?![A-Za-z0-9_-])(?!\.[A-Za-z0-9])")


def url_pattern() -> str:
    """A URL with a scheme (validated by ``is_internal_url``), or a UNC path."""
    # Trailing sentence punctuation is not part of the URL ("see http://wiki/Home, then …").
    body, end = r"[^\s<>\"'`，。；、）)\]}]", r"[^\s<>\"'`，。；、）)\]},.;:!?]"
    return (rf"(?<![A-Za-z0-9+.-]){_SCHEME}://{body}*{end}"
            rf"|(?<![\\A-Za-z0-9])\\\\[A-Za-z0-9][A-Za-z0-9_.-]*\\{body}*{end}")


class InternalNames:
    """Decides whether a host name is internal: a non-public suffix, or under one of the company's domains."""

    def __init__(self, internal_domains: Iterable[str] = ()) -> None:
        self.domains = tuple(sorted({d.lower().strip(".") for d in internal_domains if d.strip(".")}))

    def is_internal_host(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        if not host:
            return False
        if "." not in host:
            return True  # a single-label name (``wiki``, ``fs01``) resolves only on the local network
        ip = _ip(host)
        if ip is not None:
            return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_unspecified
        if any(host == s or host.endswith("." + s) for s in INTERNAL_SUFFIXES):
            return True
        return any(host == d or host.endswith("." + d) for d in self.domains)

    def is_internal_url(self, url: str) -> bool:
        if url.startswith("\\\\"):
            return True  # a Windows share: always on the company network
        rest = url.split("://", 1)[1] if "://" in url else url
        authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
        host = authority.rpartition("@")[2]
        if host.startswith("["):  # [IPv6]:port
            host = host[1:].partition("]")[0]
        elif host.count(":") == 1:
            host = host.partition(":")[0]
        return self.is_internal_host(host)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def email_domain_ok(domain: str, *, public_suffix: bool) -> bool:
    """Whether ``domain`` (after the ``@``) makes an e-mail address: any real-looking domain, internal or public.

    ``public_suffix`` says whether the public-suffix list knows its suffix (the caller asks ``tldextract``)."""
    domain = domain.lower().rstrip(".")
    last = domain.rpartition(".")[2]
    if not last or last.isdigit() or "." not in domain:
        return False
    if public_suffix or any(domain == s or domain.endswith("." + s) for s in INTERNAL_SUFFIXES):
        return True
    return last.isalpha() and 2 <= len(last) <= 24 and last not in FILE_EXTENSIONS
