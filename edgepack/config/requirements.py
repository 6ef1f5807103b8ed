"""pip requirements files as Azure ML environments write them: requirement lines plus index options. Pure.

``--index-url``/``--extra-index-url``/``--find-links`` lines are understood: the public package index is the
one this machine is configured with, so lines naming it are dropped; any other index or find-links URL is
passed to the resolver (``${VAR}`` parts are filled from the environment only then, so credentials never
enter the config, the lock or a log). Local paths, editables and nested requirement files are refused:
dependencies are resolved from an index for the image's platform, not from the host's disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement

# The public index under its historical names: the machine's configured index serves it.
PUBLIC_INDEXES = ("pypi.org/simple", "pypi.python.org/simple", "pypi.org/pypi", "files.pythonhosted.org")
_OPTION = re.compile(r"^(--index-url|-i|--extra-index-url|--find-links|-f|--trusted-host|--pre|--prefer-binary)"
                     r"(?:[= ]\s*(\S+))?$")


@dataclass(frozen=True)
class RequirementSet:
    """Requirement lines in order, plus the extra indexes and find-links locations they come from."""

    requirements: tuple[str, ...] = ()
    index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()

    def merged(self, other: "RequirementSet") -> "RequirementSet":
        """This set followed by ``other``; each line, index and location once."""
        return RequirementSet(tuple(dict.fromkeys(self.requirements + other.requirements)),
                              tuple(dict.fromkeys(self.index_urls + other.index_urls)),
                              tuple(dict.fromkeys(self.find_links + other.find_links)))

    def names(self) -> tuple[str, ...]:
        """The canonical project names of the requirement lines."""
        return tuple(requirement_name(line) for line in self.requirements)


def requirement_name(line: str) -> str:
    """The normalized project name of a requirement line (``Scikit_Learn[x]>=1`` -> ``scikit-learn``)."""
    try:
        name = Requirement(line).name
    except InvalidRequirement:
        name = re.split(r"[\[<>=!~;@ ]", line, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def is_public_index(url: str) -> bool:
    """True for the public package index under any of its names."""
    return any(host in url for host in PUBLIC_INDEXES)


def parse_requirements(text: str, field: str) -> tuple[RequirementSet, list[str]]:
    """Read requirements-file text; returns the set and a problem per line edgepack cannot honour."""
    reqs: list[str] = []
    indexes: list[str] = []
    links: list[str] = []
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        option = _OPTION.match(line)
        if option:
            flag, value = option.groups()
            if flag in ("--trusted-host", "--pre", "--prefer-binary"):
                continue  # TLS is always verified; the resolver decides on pre-releases and wheels itself
            if not value:
                problems.append(f"{field}: line {number} '{line}': {flag} needs a URL")
            elif "://" not in value or value.startswith("file:"):
                problems.append(f"{field}: line {number} '{line}': local paths are not supported (dependencies "
                                "are resolved from an index for the image's platform)")
            elif not is_public_index(value):
                (links if flag in ("--find-links", "-f") else indexes).append(value)
            continue
        spec = line.split(";")[0]
        local = "@ file:" in spec.replace("@file:", "@ file:") or spec.endswith((".whl", ".tar.gz", ".zip")) \
            and "://" not in spec
        if line.startswith(("-", ".", "/", "file:")) or local or ("://" in spec and "@" not in spec):
            problems.append(f"{field}: line {number} '{line}': options and local paths are not supported "
                            "(dependencies are resolved from the package index for the image's platform)")
            continue
        try:
            Requirement(line)
        except InvalidRequirement as exc:
            problems.append(f"{field}: line {number} '{line}': not a valid requirement ({exc})")
            continue
        reqs.append(line)
    return RequirementSet(tuple(reqs), tuple(indexes), tuple(links)), problems
