"""Run directories: resolved config, append-only JSONL records, metrics, plots.

Every finished unit of work is appended (and fsynced) to ``records.jsonl`` the moment it
is done, under a key. A killed run resumed from its directory skips every key already
there, so nothing computed is lost or computed twice. Two runs never share a directory:
new ones are created with an exclusive ``mkdir``. A finished run's records may be stored
gzipped (``records.jsonl.gz``: the repository's runs travel to a GPU machine under a size limit);
readers open it where ``records.jsonl`` is absent, and a run unpacks it before its first new record.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import time
import zlib
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from . import tracking
from .models import LoadedModel
from .tracking import Tracker

log = logging.getLogger(__name__)


class RunError(RuntimeError):
    """A run directory that cannot be used as asked (exists, config differs, ...)."""


def read_jsonl(path: Path, partial_last: bool = False) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; errors name the file and the line.

    Lines end at "\n" only: ``str.splitlines`` also breaks at U+2028, U+0085 and the like,
    which ``json.dumps(..., ensure_ascii=False)`` leaves raw inside strings of model output.
    ``partial_last``: skip a last line without its newline (a running job is writing it).
    """
    path = Path(path)
    packed = path.with_name(path.name + ".gz")
    if not path.exists() and packed.exists():
        path = packed
    try:
        lines = (_gunzip(path) if path.suffix == ".gz" else path.read_bytes()).decode("utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e})") from None
    if partial_last or not lines[-1].strip():
        lines = lines[:-1]
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: line {n}: invalid JSON at column {e.colno} ({e.msg})") from None
        if not isinstance(rec, dict):
            raise ValueError(f"{path}: line {n}: expected an object")
        out.append((n, rec))
    return out


def _gunzip(path: Path) -> bytes:
    try:
        return gzip.decompress(path.read_bytes())
    except (EOFError, OSError, zlib.error) as e:  # cut short, or not gzip at all
        raise ValueError(f"{path}: not a complete gzip file ({e})") from None


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object a file holds; errors name the file (and the line and column of bad JSON)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno} ({e.msg})") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def plain(obj: Any) -> Any:
    if isinstance(obj, LoadedModel):  # a model object given for a spec: saved by its name
        return obj.spec
    if is_dataclass(obj):  # field by field: ``asdict`` would deep-copy a model object
        return {f.name: plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


# Settings added after runs were made, with the value that reproduces such a run: a saved config
# without the key resumes only if the setting has that value now (the error names it).
LEGACY = {"amp": False, "retry_temperature": 0.0, "reflection_temperature": 0.0, "loss_type": "dapo", "tasks": [],
          "gen_batch_size": 8, "form": False}


# A content hash of the items a run's records are keyed on (``knowledge.data.content_hash``), in the
# config section beside the setting that names their source: a path may hold other items later.
CONTENT_HASH, SOURCE = "dataset_hash", "dataset"


def _differences(saved: Any, now: Any, path: str = "") -> list[str]:
    """The settings (dotted paths) whose value changed. A setting added to selfadapt after the
    run was created is absent from its saved config; the run still resumes if the setting is
    None (off) now, or has its ``LEGACY`` value. Content hashes are left to ``_changed_items``."""
    if isinstance(saved, dict) and isinstance(now, dict):
        return [d for k in sorted(set(saved) | set(now), key=str)
                for d in _differences(saved.get(k), now.get(k), f"{path}.{k}" if path else str(k))]
    leaf = path.rsplit(".", 1)[-1]
    if leaf == CONTENT_HASH:
        return []
    if saved is None and leaf in LEGACY:
        ok = now == LEGACY[leaf]
        return [] if ok else [f"{path}: not in the saved config (a run made before it used {LEGACY[leaf]!r}), "
                              f"now {now!r}"]
    return [] if saved == now else [f"{path}: saved {saved!r}, now {now!r}"]


def _changed_items(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The sources (in any section of ``now``) whose items hash otherwise than when the run was
    made. A hash the saved config lacks (a run made before hashes were recorded: nothing to check)
    is added to ``saved``, so that a later resume is checked."""
    changed = []
    if now.get(CONTENT_HASH) is not None:
        if saved.get(CONTENT_HASH) is None:
            saved[CONTENT_HASH] = now[CONTENT_HASH]
        elif saved[CONTENT_HASH] != now[CONTENT_HASH]:
            changed.append(f"{SOURCE} {now.get(SOURCE)!r} has changed since the run was made (its items hash "
                           f"to {now[CONTENT_HASH]}, the run's to {saved[CONTENT_HASH]})")
    for key, value in now.items():
        if isinstance(value, dict) and isinstance(saved.get(key), dict):
            changed += _changed_items(saved[key], value)
    return changed


class Run:
    def __init__(self, path: Path, config: dict[str, Any]):
        self.path = path
        self.config = config
        self.records_path = path / "records.jsonl"
        self._packed = path / "records.jsonl.gz"
        if self._packed.exists() and self.records_path.exists():
            self._settle_two_copies()
        self._drop_partial_line()
        self._by_key = {r["key"]: r for r in self._read()}
        # a mirror of the records and metrics in the configured experiment trackers (``tracking``)
        self.tracker = Tracker(path, config) if tracking.report_to() else None
        if self.tracker:
            self.tracker.resumed(list(self._by_key.values()))

    def _settle_two_copies(self) -> None:
        """A run killed between unpacking and removing the packed file holds both, the plain one holding
        every packed record and maybe more: the packed copy goes. Any other pair is for the user to sort out."""
        if self.records_path.read_bytes().startswith(_gunzip(self._packed)):
            self._packed.unlink()
            log.info("removed %s: %s holds its records", self._packed, self.records_path)
            return
        raise RunError(f"{self.path} holds both records.jsonl and records.jsonl.gz, with different records: keep "
                       "the one with every record")

    def _unpack(self) -> None:
        """A run stored gzipped goes on in plain JSONL, the one file appended to from then on; done at its
        first new record, so that a run opened to be read leaves its stored file as it was. Written whole
        before the packed file goes, so a kill in between loses nothing (``_settle_two_copies``)."""
        if not self._packed.exists():
            return
        tmp = self.records_path.with_suffix(".jsonl.tmp")
        with open(tmp, "wb") as f:
            f.write(_gunzip(self._packed))
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.records_path)
        self._packed.unlink()
        log.info("unpacked %s to append to it", self._packed)

    def _drop_partial_line(self) -> None:
        """A kill mid-write leaves a line without its newline; cut it so appends stay valid."""
        if not self.records_path.exists():
            return
        data = self.records_path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            log.warning("%s ends in an incomplete record (killed mid-write?); it will be redone", self.records_path)
            with open(self.records_path, "r+b") as f:
                f.truncate(keep)

    @classmethod
    def create(cls, root: Path, name: str, config: Any) -> "Run":
        root.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for n in range(1000):
            path = root / (f"{name}-{stamp}" + (f"-{n}" if n else ""))
            try:
                path.mkdir()
            except FileExistsError:
                continue
            cfg = plain(config)
            (path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
            log.info("run directory: %s", path)
            return cls(path, cfg)
        raise RunError(f"could not create a fresh run directory under {root}")

    @staticmethod
    def saved_config(path: Path) -> dict[str, Any]:
        """The config a run directory was made with (to check a resume against it before any work)."""
        cfg_file = Path(path) / "config.yaml"
        if not cfg_file.is_file():
            raise RunError(f"{path} is not a run directory (no config.yaml)")
        return yaml.safe_load(cfg_file.read_text())

    @classmethod
    def resume(cls, path: Path, config: Any, ignore: tuple[str, ...] = (), extend: tuple[str, ...] = (),
               update: tuple[str, ...] = ()) -> "Run":
        """Reopen a run; the config must match the saved one except for keys in ``ignore`` and
        ``runs_dir`` (where runs are created says nothing about what they compute: a run
        directory may be moved). A list under a key in ``extend`` may grow (e.g. the policies of
        an evaluation: a new one adds conditions and changes no record); the saved config then
        holds the union. A key in ``update`` may change and the saved config takes the new value
        (e.g. ReST-EM's rounds: round r depends on r alone, so more rounds redo none). Where the
        config holds a content hash of its items (``CONTENT_HASH``), the run resumes only on the
        same items."""
        ignore = (*ignore, *extend, *update, "runs_dir")
        saved = cls.saved_config(path)
        cfg_file = path / "config.yaml"
        cfg = plain(config)
        differing = _differences({k: v for k, v in saved.items() if k not in ignore},
                                 {k: v for k, v in cfg.items() if k not in ignore})
        if differing:
            raise RunError(f"cannot resume {path}: config differs ({'; '.join(differing)})")
        before = yaml.safe_dump(saved, sort_keys=False)
        changed = _changed_items(saved, cfg)
        if changed:
            raise RunError(f"cannot resume {path}: {'; '.join(changed)}. Its records are keyed by position and "
                           "would be reused for other items: start a new run (without --resume), or restore "
                           "the data the run was made with")
        for key in update:
            saved[key] = cfg.get(key)
        for key in extend:
            added = [v for v in cfg.get(key) or [] if v not in (saved.get(key) or [])]
            if added:
                saved[key] = [*(saved.get(key) or []), *added]
        if yaml.safe_dump(saved, sort_keys=False) != before:
            cfg_file.write_text(yaml.safe_dump(saved, sort_keys=False))
        log.info("resuming %s", path)
        return cls(path, saved)

    def records(self) -> list[dict[str, Any]]:
        """Every record written so far, in order (held in memory; the file is read once, on open)."""
        return list(self._by_key.values())

    def _read(self) -> list[dict[str, Any]]:
        if not self.records_path.exists() and not self._packed.exists():
            return []
        try:
            return [rec for _, rec in read_jsonl(self.records_path)]
        except ValueError as e:
            raise RunError(str(e)) from None

    def done(self, key: str) -> bool:
        return key in self._by_key

    def get(self, key: str) -> dict[str, Any]:
        return self._by_key[key]

    def names_score(self, name: str) -> None:
        """What the records' ``score`` measures (``exact_match``, ``solved``): the name trackers show."""
        if self.tracker:
            self.tracker.score_name = name.replace(" ", "_")

    def append(self, key: str, record: dict[str, Any]) -> None:
        if key in self._by_key:
            raise RunError(f"record {key!r} already written in {self.records_path}")
        record = {"key": key, **plain(record)}
        line = json.dumps(record, ensure_ascii=False)
        self._unpack()
        with open(self.records_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._by_key[key] = record
        if self.tracker:
            self.tracker.record(record)

    def write_json(self, name: str, data: Any) -> Path:
        out = self.path / name
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(json.dumps(plain(data), indent=2, ensure_ascii=False))
        tmp.replace(out)
        if self.tracker and out.name == "metrics.json":
            self.tracker.metrics(name, plain(data))
        return out
