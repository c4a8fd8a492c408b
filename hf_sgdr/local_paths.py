"""Local paths: kept out of what is published, and read from the command line as a shell would.

A manifest or card pushed to the Hub names a local file or folder by its last part only, never the uploader's
folders. A run records local data by absolute path (`data.dataset_reference`, the recipes' `train_data.data_file`), so
that a command on the same machine finds it from any working directory. Published, such a value becomes
`./<last part>`: still a relative path (no Hub id a later `load_dataset` could take it for), naming nothing about
the machine it came from. An absolute path inside a sentence (a description of the validation text) is cut to its
last part the same way.
"""

from __future__ import annotations

import os
import re
from typing import Any

#: An absolute path inside a longer text: POSIX (`/a/b`), home-relative (`~/a`) or Windows (`C:\\a`), starting a
#: word and holding at least two separators.
_EMBEDDED_PATH = re.compile(r"(?<!\S)(?:~|[A-Za-z]:)?[\\/][^\s\\/]+[\\/]\S*")
#: A URL (`https://...`, `hf://...`, `s3://...`): never a local path.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def is_local_path(name: str) -> bool:
    """Whether `name` is a local path rather than a Hub id or a URL, by its shape: absolute, home- or dot-relative,
    a drive, a backslash, or more than one `/` (a Hub id has at most one), and no whitespace unless it starts like a
    path. A URL (`https://...`, `hf://...`, `s3://...`) is not."""
    if _URL.match(name):
        return False
    if name.startswith((".", "~", "/", "\\")) or re.match(r"^[A-Za-z]:[\\/]", name) is not None:
        return True
    return not re.search(r"\s", name) and ("\\" in name or name.count("/") > 1)


def last_part(name: str) -> str:
    """The last part of a path, whichever separator it uses (`/home/alice/corpus/` -> `corpus`)."""
    return re.split(r"[\\/]", name.rstrip("\\/"))[-1] or name


#: Keys whose values name a file, folder or Hub id: a relative name there is local when it exists here too
#: (`data/train.csv`, `models/bert`, shaped like a Hub id).
PATH_KEYS = frozenset({"base_model", "dataset_name", "data_file", "train_file", "validation_file"})


def is_local(name: str) -> bool:
    """`is_local_path`, or a name that exists here (a relative file or folder shaped like a Hub id)."""
    return is_local_path(name) or (not _URL.match(name) and os.path.exists(name))


def public_text(text: str, names_a_path: bool = False) -> str:
    """`text` as published: a local path (`names_a_path`: also a name that exists here, `is_local`) as
    `./<last part>`, an absolute path inside a sentence as its last part."""
    if is_local(text) if names_a_path else is_local_path(text):
        return f"./{last_part(text)}"
    return _EMBEDDED_PATH.sub(lambda match: last_part(match.group(0)), text)


def without_local_paths(value: Any, where: str = "", key: str = "") -> tuple[Any, list[str]]:
    """`value` (JSON data: objects, lists, strings, numbers) with every string made `public_text` (a value of one
    of `PATH_KEYS`, `key` for the top one, naming a path), and the dotted keys (`where` first) of those that
    changed."""
    if isinstance(value, str):
        public = public_text(value, names_a_path=key in PATH_KEYS)
        return public, [where] if public != value else []
    if isinstance(value, dict):
        changed: list[str] = []
        result = {}
        for name, item in value.items():
            result[name], inner = without_local_paths(item, f"{where}.{name}" if where else str(name), str(name))
            changed += inner
        return result, changed
    if isinstance(value, list):
        changed, items = [], []
        for index, item in enumerate(value):
            public, inner = without_local_paths(item, f"{where}[{index}]")
            items.append(public)
            changed += inner
        return items, changed
    return value, []


def user_path(value: str) -> str:
    """A path given on the command line, `~` expanded: a shell leaves `--flag=~/x` (and a quoted `~`) as it is."""
    return os.path.expanduser(value)
