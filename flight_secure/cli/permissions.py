"""Who may read and write which dataset: a small INI file, read with configparser.

::

    # rights: read, write (create new datasets), overwrite (also replace existing ones)
    [users]
    alice = read, write
    bob   = read
    *     = read          # everyone else who authenticated

    [dataset payroll]     # this dataset only; overrides [users]
    alice = read
    *     = none

For user U and dataset D the rights come from the first of: ``U`` in ``[dataset D]``,
``*`` in ``[dataset D]``, ``U`` in ``[users]``, ``*`` in ``[users]``; with none of
these, U has no rights. ``overwrite`` implies ``write``; ``none`` grants nothing.
Names are case-sensitive and may contain ``:`` (certificate URIs); only ``=`` separates.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

RIGHTS = ("read", "write", "overwrite")
EVERYONE = "*"
_DATASET_PREFIX = "dataset "


def parse_rights(text: str) -> frozenset[str]:
    """``"read, write"`` as a set of rights; ValueError for an unknown word."""
    words = {w.strip() for w in text.replace(" ", ",").split(",") if w.strip()}
    unknown = words - set(RIGHTS) - {"none"}
    if unknown:
        raise ValueError(f"unknown right {sorted(unknown)[0]!r}; use {', '.join(RIGHTS)} "
                         "or none")
    if "overwrite" in words:
        words.add("write")
    return frozenset(words & set(RIGHTS))


@dataclass(frozen=True)
class Permissions:
    """Rights per user (``users``) and per dataset (``datasets``: name -> user -> rights)."""

    users: Mapping[str, frozenset[str]]
    datasets: Mapping[str, Mapping[str, frozenset[str]]] = field(default_factory=dict)
    source: str = "built-in defaults"

    def rights(self, user: str, dataset: str) -> frozenset[str]:
        """The rights ``user`` has on ``dataset``."""
        for table in (self.datasets.get(dataset, {}), self.users):
            for key in (user, EVERYONE):
                if key in table:
                    return table[key]
        return frozenset()

    def allows(self, user: str, dataset: str, right: str) -> bool:
        return right in self.rights(user, dataset)

    def summary(self) -> str:
        """One line describing the global rules, for the startup banner."""
        parts = [f"{user}: {', '.join(r for r in RIGHTS if r in rights) or 'none'}"
                 for user, rights in self.users.items()]
        extra = f"; {len(self.datasets)} dataset rule(s)" if self.datasets else ""
        return f"{self.source}: " + "; ".join(parts) + extra


def default_permissions(admin: str = "admin") -> Permissions:
    """Used without a file: ``admin`` reads and writes; everyone else reads."""
    return Permissions({admin: frozenset({"read", "write"}), EVERYONE: frozenset({"read"})})


def load_permissions(path: str | os.PathLike[str]) -> Permissions:
    """Read a permissions file; ValueError naming the file for anything malformed.

    Raises OSError when the file cannot be read.
    """
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None,
                                       default_section="\x00", inline_comment_prefixes=("#",))
    parser.optionxform = str  # user names are case-sensitive
    with open(path, encoding="utf-8") as handle:
        try:
            parser.read_file(handle)
        except configparser.Error as exc:
            raise ValueError(f"{path}: {' '.join(exc.message.split())}") from None
    users: dict[str, frozenset[str]] = {}
    datasets: dict[str, dict[str, frozenset[str]]] = {}
    for section in parser.sections():
        if section == "users":
            table = users
        elif section.startswith(_DATASET_PREFIX) and section[len(_DATASET_PREFIX):].strip():
            table = datasets.setdefault(section[len(_DATASET_PREFIX):].strip(), {})
        else:
            raise ValueError(f"{path}: unknown section [{section}]; use [users] or "
                             "[dataset NAME]")
        for user, value in parser.items(section):
            try:
                table[user] = parse_rights(value)
            except ValueError as exc:
                raise ValueError(f"{path}: [{section}] {user}: {exc}") from None
    return Permissions(users, datasets, source=str(path))
