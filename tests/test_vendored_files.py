"""The vendored browser libraries are exactly the files their README records, and the pages load those.

static/vendor/README.md lists every file with its sha256. A file edited by accident (a reformat, a "fix" of a
minified line), one added without being recorded, or a script tag pointing at a version that is not there
fails here, before a browser ever runs it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from django.conf import settings

VENDOR = Path(settings.BASE_DIR) / "static" / "vendor"
README = VENDOR / "README.md"
SCRIPTS_TEMPLATE = Path(settings.BASE_DIR) / "templates" / "chat" / "_markdown_scripts.html"
_ROW = re.compile(r"^\| `(?P<path>[^`]+)` \| `(?P<sha256>[0-9a-f]{64})` \|$", re.M)


def _recorded() -> dict[str, str]:
    return {match["path"]: match["sha256"] for match in _ROW.finditer(README.read_text())}


def _present() -> set[str]:
    return {path.relative_to(VENDOR).as_posix() for path in VENDOR.rglob("*") if path.is_file()} - {
        "README.md"
    }


def test_every_vendored_file_matches_the_sha256_recorded_for_it() -> None:
    recorded = _recorded()
    assert recorded, "the README's table of files and hashes is missing or unreadable"
    mismatched = {
        path: digest
        for path, digest in recorded.items()
        if not (VENDOR / path).is_file() or hashlib.sha256((VENDOR / path).read_bytes()).hexdigest() != digest
    }
    assert mismatched == {}, "vendored files differ from the recorded hashes (or are missing)"


def test_no_vendored_file_is_left_unrecorded() -> None:
    assert _present() == set(_recorded())


def test_every_vendored_package_ships_its_licence() -> None:
    packages = {path.split("/", 1)[0] for path in _recorded()}
    assert packages == {"markdown-it-14.3.3", "dompurify-3.5.0", "highlightjs-cdn-assets-11.12.0"}
    for package in packages:
        assert (VENDOR / package / "LICENSE").is_file(), package


def test_the_pages_load_the_vendored_versions_that_are_there() -> None:
    loaded = re.findall(r"\{% static '(vendor/[^']+)' %\}", SCRIPTS_TEMPLATE.read_text())
    assert len(loaded) == 3
    for path in loaded:
        assert path.removeprefix("vendor/") in _recorded(), path
