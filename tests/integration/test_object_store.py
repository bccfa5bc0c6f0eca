"""The broker's object store (infra/s3rver/serve.js) stays readable and whole across a kill -9.

A PUT that was acknowledged survives intact; a PUT that was not may vanish, but never leaves a listing
that fails, a half object, or an ETag that is not the MD5 of the body served (Tansu compares ETags to
replace its partition watermarks "if unchanged")."""

from __future__ import annotations

import hashlib
import random
import resource
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from dataflows.stack.broker import s3rver_command
from dataflows.stack.processes import free_port, wait_for_port

BUCKET = "tansu"
S3 = "{http://doc.s3.amazonaws.com/2006-03-01/}"
PREFIX = "clusters/tansu/topics/t/partitions/0000000000/"


@dataclass
class Store:
    """One serve.js process over `root`, started and killed -9 as the broker's store is."""

    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{BUCKET}"

    def start(self, max_open_files: int | None = None) -> None:
        argv = [*s3rver_command(), str(self.root), "127.0.0.1", str(self.port), BUCKET]

        def limit() -> None:
            if max_open_files is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (max_open_files, max_open_files))

        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=limit)  # noqa: PLW1509
        wait_for_port("127.0.0.1", self.port, 30.0)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()  # SIGKILL
            self.process.wait()
            self.process = None

    def listing(self, prefix: str) -> dict[str, str]:
        """Key -> ETag of every object under `prefix`; fails unless the store answers 200."""
        answer = requests.get(self.url, params={"list-type": "2", "prefix": prefix}, timeout=30)
        assert answer.status_code == 200, f"listing {prefix!r}: {answer.status_code} {answer.text[:300]}"
        contents = ET.fromstring(answer.content).iter(f"{S3}Contents")
        return {c.findtext(f"{S3}Key", ""): c.findtext(f"{S3}ETag", "").strip('"') for c in contents}

    def get(self, key: str) -> tuple[bytes, str, str] | None:
        """(body, ETag, Content-Type) of `key`, or None when absent."""
        answer = requests.get(f"{self.url}/{key}", timeout=30)
        if answer.status_code == 404:
            return None
        assert answer.status_code == 200, f"GET {key}: {answer.status_code} {answer.text[:300]}"
        return answer.content, answer.headers["ETag"].strip('"'), answer.headers.get("Content-Type", "")

    def put(self, key: str, body: bytes, headers: dict[str, str] | None = None) -> requests.Response:
        return requests.put(f"{self.url}/{key}", data=body, headers=headers or {}, timeout=30)


@pytest.fixture
def store() -> Iterator[Store]:
    root = Path(tempfile.mkdtemp(prefix="tidemark-store-"))
    s = Store(root)
    try:
        yield s
    finally:
        s.kill()
        shutil.rmtree(root, ignore_errors=True)


def md5(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()  # noqa: S324 - S3's ETag of a single PUT is the body's MD5


# Crash states a kill -9 leaves in the layout the store had before this test (s3rver's: the object, its
# `.md5` and `metadata.json` as three files, each written as a `.staged` or `.tmp` file and renamed):
# (files to write next to the key, body the key must then serve or None when it must be absent).
OLD = b'{"watermark": 1}'
NEW = b'{"watermark": 2, "more": "bytes"}'
META = '{"content-type": "application/json"}'


def _crash_states() -> dict[str, tuple[dict[str, bytes | str], bytes | None]]:
    obj, sum_, meta = "._S3rver_object", "._S3rver_object.md5", "._S3rver_metadata.json"
    old = {obj: OLD, sum_: md5(OLD), meta: META}
    return {
        "object renamed, metadata still staged": (
            {obj: NEW, f"{sum_}.staged": md5(NEW), f"{meta}.staged": META}, NEW),
        "overwrite: object renamed, .md5 and metadata staged, old ones in place": (
            {**old, obj: NEW, f"{sum_}.staged": md5(NEW), f"{meta}.staged": META}, NEW),
        "overwrite: object renamed and .md5 renamed, old metadata in place": (
            {**old, obj: NEW, sum_: md5(NEW), f"{meta}.staged": META}, NEW),
        "overwrite: new object landed, old .md5 and metadata remain": ({**old, obj: NEW}, NEW),
        "staged object of a first PUT never renamed": ({f"{obj}.4242.a1b2c3.tmp": NEW[:7]}, None),
        "staged object of an overwrite never renamed": ({**old, f"{obj}.4242.a1b2c3.tmp": NEW[:7]}, OLD),
        "object without metadata and without staged metadata": ({obj: NEW}, NEW),
        "truncated staged .md5 and metadata": ({**old, obj: NEW, f"{sum_}.staged": "5d4", f"{meta}.staged": '{"cont'}, NEW),
        "truncated metadata": ({obj: NEW, sum_: md5(NEW), meta: '{"content-type": "appl'}, NEW),
        "empty .md5 (s3rver regenerates it in place)": ({obj: NEW, sum_: "", meta: META}, NEW),
    }  # fmt: skip


@pytest.mark.parametrize("state", list(_crash_states()))
def test_every_crash_state_of_a_key_reads_whole(store: Store, state: str) -> None:
    files, expected = _crash_states()[state]
    key = f"{PREFIX}watermark.json"
    directory = store.root / BUCKET / Path(PREFIX)
    directory.mkdir(parents=True)
    for suffix, content in files.items():
        path = directory / f"watermark.json{suffix}"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    store.start()

    listed = store.listing(PREFIX)
    served = store.get(key)
    if expected is None:
        assert served is None and key not in listed
        return
    assert served is not None, f"{state}: the acknowledged object vanished"
    body, etag, _ = served
    assert body == expected
    assert etag == md5(body) == listed.get(key), f"{state}: ETag {etag}, listed {listed.get(key)}, body MD5 {md5(body)}"
    # Tansu's "replace if unchanged" with the ETag it read goes through; with another one it does not
    assert store.put(key, b"{}", {"If-Match": '"0123456789abcdef0123456789abcdef"'}).status_code == 412
    assert store.put(key, b"{}", {"If-Match": f'"{etag}"'}).status_code == 200
    assert store.get(key) == (b"{}", md5(b"{}"), "binary/octet-stream")


@dataclass
class Writer:
    """Puts to its own keys one after another: per key, the last acknowledged body and the one in flight."""

    keys: list[str]
    rng: random.Random
    acked: dict[str, bytes] = field(default_factory=dict)
    in_flight: dict[str, bytes] = field(default_factory=dict)
    failure: str | None = None

    def run(self, put: Callable[[str, bytes, dict[str, str]], requests.Response]) -> None:
        while True:
            key = self.rng.choice(self.keys)
            body = self.rng.randbytes(self.rng.choice([0, 17, 1_000, 40_000, 300_000]))
            headers = {"Content-Type": "application/octet-stream"}
            if key in self.acked and self.rng.random() < 0.5:
                headers["If-Match"] = f'"{md5(self.acked[key])}"'
            elif key not in self.acked and self.rng.random() < 0.5:
                headers["If-None-Match"] = "*"
            self.in_flight[key] = body
            try:
                answer = put(key, body, headers)
            except requests.RequestException:
                return  # the store was killed
            if answer.status_code != 200:
                self.failure = f"PUT {key} {headers}: {answer.status_code} {answer.text[:200]}"
                return
            self.acked[key] = body
            del self.in_flight[key]


def _check_after_restart(store: Store, writers: list[Writer]) -> None:
    listed = store.listing("")
    for w in writers:
        for key in w.keys:
            allowed = [b for b in (w.acked.get(key), w.in_flight.get(key)) if b is not None]
            served = store.get(key)
            if served is None:
                assert key not in w.acked, f"acknowledged {key} vanished"
                assert key not in listed
                continue
            body, etag, _ = served
            assert body in allowed, f"{key}: {len(body)} bytes served, none of the PUTs sent ({[len(b) for b in allowed]})"
            assert etag == md5(body) == listed.get(key), f"{key}: ETag {etag}, listed {listed.get(key)}, MD5 {md5(body)}"
            if key in w.in_flight and body == w.in_flight[key]:
                w.acked[key] = body  # it landed: the writer's next "if unchanged" compares with it
            w.in_flight.pop(key, None)


def test_acknowledged_puts_survive_kill_9_at_random_points(store: Store) -> None:
    rng = random.Random(2026)
    writers = [Writer([f"{PREFIX}{w}/{k:03}.batch" for k in range(6)], random.Random(rng.random())) for w in range(6)]
    for _round in range(12):
        store.start()
        threads = [threading.Thread(target=w.run, args=(store.put,), daemon=True) for w in writers]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.2, 1.5))
        store.kill()
        for t in threads:
            t.join(timeout=60)
        assert not [w.failure for w in writers if w.failure], [w.failure for w in writers if w.failure]
        store.start()
        _check_after_restart(store, writers)
        store.kill()
    assert sum(len(w.acked) for w in writers) > 20


def test_a_listing_of_many_pages_returns_every_key_once_in_order(store: Store) -> None:
    """Tansu lists a partition's batch objects on every fetch; past 1,000 of them S3 pages the answer."""
    store.start()
    offsets = random.Random(7).sample(range(1_000_000), 2_345)
    keys = [f"{PREFIX}records/{offset:020}.batch" for offset in offsets]
    with requests.Session() as session:
        for key in keys:
            assert session.put(f"{store.url}/{key}", data=b"batch", timeout=30).status_code == 200
    listed: list[str] = []
    token = None
    while True:
        params = {"list-type": "2", "prefix": f"{PREFIX}records/", **({"continuation-token": token} if token else {})}
        answer = requests.get(store.url, params=params, timeout=30)
        assert answer.status_code == 200, f"page {len(listed) // 1000 + 1}: {answer.status_code} {answer.text[:300]}"
        page = ET.fromstring(answer.content)
        listed += [c.findtext(f"{S3}Key", "") for c in page.iter(f"{S3}Contents")]
        token = page.findtext(f"{S3}NextContinuationToken")
        if page.findtext(f"{S3}IsTruncated") != "true":
            break
    assert listed == sorted(keys)


def test_the_store_keeps_serving_after_many_conditional_gets(store: Store) -> None:
    """Tansu reads each partition's watermark with If-None-Match on every fetch: nearly all answers are
    304. Each must release what it opened, or the store runs out of file descriptors and fails for good."""
    store.start(max_open_files=256)
    key = f"{PREFIX}watermark.json"
    body = b'{"high": 1}'
    assert store.put(key, body).status_code == 200
    etag = f'"{md5(body)}"'
    with requests.Session() as session:
        for _ in range(600):
            assert session.get(f"{store.url}/{key}", headers={"If-None-Match": etag}, timeout=30).status_code == 304
            assert session.head(f"{store.url}/{key}", timeout=30).status_code == 200
    assert store.get(key) == (body, etag.strip('"'), "binary/octet-stream")
    assert store.listing(PREFIX) == {key: etag.strip('"')}
    assert store.put(key, b'{"high": 2}', {"If-Match": etag}).status_code == 200


def test_a_put_abandoned_while_waiting_for_its_key_does_not_block_the_key(store: Store) -> None:
    """PUTs of one key run one after another. One whose client gave up while it waited (Tansu gives up
    after 30 s) must not keep the key: its later PUTs (a partition's watermark, a group's offsets) would
    wait for good."""
    store.start()
    key = "clusters/tansu/groups/consumers/g.json"
    head = f"PUT /{BUCKET}/{key} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\n".encode()
    first = socket.create_connection(("127.0.0.1", store.port))
    first.sendall(head + b"12345")  # holds the key until the rest of its body arrives
    waiting = socket.create_connection(("127.0.0.1", store.port))
    waiting.sendall(head + b"abcde")
    time.sleep(0.5)  # the store has read its request and queued it behind the first
    waiting.close()  # its client gives up
    first.sendall(b"67890")
    assert first.recv(4096).startswith(b"HTTP/1.1 200")
    first.close()
    assert store.put(key, b"{}").status_code == 200
    assert store.get(key) == (b"{}", md5(b"{}"), "binary/octet-stream")


def _list_all(store: Store, prefix: str, delimiter: str = "", start_after: str = "", page: int = 7) -> tuple[list[str], list[str]]:
    """(keys, common prefixes) of a whole listing, page by page as Tansu reads it."""
    keys: list[str] = []
    prefixes: list[str] = []
    token = None
    params = {"list-type": "2", "prefix": prefix, "max-keys": str(page), **({"delimiter": delimiter} if delimiter else {}),
              **({"start-after": start_after} if start_after else {})}  # fmt: skip
    while True:
        answer = requests.get(store.url, params={**params, **({"continuation-token": token} if token else {})}, timeout=30)
        assert answer.status_code == 200, answer.text[:300]
        page = ET.fromstring(answer.content)
        keys += [c.findtext(f"{S3}Key", "") for c in page.iter(f"{S3}Contents")]
        prefixes += [c.findtext(f"{S3}Prefix", "") for c in page.iter(f"{S3}CommonPrefixes")]
        token = page.findtext(f"{S3}NextContinuationToken")
        if page.findtext(f"{S3}IsTruncated") != "true":
            return keys, prefixes


def _expected(model: dict[str, bytes], prefix: str, delimiter: str, start_after: str) -> tuple[list[str], list[str]]:
    keys, prefixes = [], set()
    for key in sorted(k for k in model if k.startswith(prefix) and k > start_after):
        cut = key.find(delimiter, len(prefix)) if delimiter else -1
        if cut == -1:
            keys.append(key)
        else:
            prefixes.add(key[: cut + 1])
    return keys, sorted(prefixes)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_listings_follow_every_put_and_delete_in_any_order(store: Store, seed: int) -> None:
    """The store keeps each directory's entries and each object's listing metadata in memory (a listing
    of a big partition must not read the disk): whatever order writes, deletes and listings come in, a
    listing equals the keys that exist, with the ETag of each key's last body, and so after a restart."""
    rng = random.Random(seed)
    store.start()
    names = [f"{PREFIX}records/{n:020}.batch" for n in range(0, 60, 3)] + [
        f"clusters/tansu/groups/consumers/g{n}.json" for n in range(3)] + [
        f"clusters/tansu/groups/consumers/g{n}/offsets/t/partitions/{p:010}.json" for n in range(3) for p in range(3)]  # fmt: skip
    model: dict[str, bytes] = {}
    views = [(PREFIX, "", ""), ("clusters/tansu/groups/consumers/", "/", ""), ("clusters/", "", ""),
             (f"{PREFIX}records/", "", f"{PREFIX}records/{30:020}.batch"), ("", "/", "")]  # fmt: skip
    with requests.Session() as session:
        for step in range(250):
            key = rng.choice(names)
            if rng.random() < 0.25 and key in model:
                assert session.delete(f"{store.url}/{key}", timeout=30).status_code == 204
                del model[key]
            else:
                model[key] = f"{key} {step}".encode()
                assert session.put(f"{store.url}/{key}", data=model[key], timeout=30).status_code == 200
            if rng.random() < 0.3:  # a listing fills the caches the next writes must keep up to date
                view = rng.choice(views)
                assert _list_all(store, *view) == _expected(model, *view), (step, view)
        for restarted in (False, True):
            if restarted:
                store.kill()
                store.start()
            for view in views:
                assert _list_all(store, *view) == _expected(model, *view), (restarted, view)
            assert store.listing("clusters/") == {k: md5(v) for k, v in model.items()}


def _read_syscalls(pid: int) -> int:
    return int(next(line for line in Path(f"/proc/{pid}/io").read_text().splitlines() if line.startswith("syscr")).split()[1])


def test_listing_a_big_partition_again_does_not_read_each_object(store: Store) -> None:
    """Tansu lists a partition's every batch object on each fetch behind the high watermark. The store
    reads each object's metadata once per version, not per listing: a listing that opened every object on
    the store's one thread (1.3 s for 9,000) starved the group's offset commits, and consumers with lag
    read almost nothing. Counted in read system calls, not timed."""
    store.start()
    prefix = f"{PREFIX}records/"
    with requests.Session() as session:
        for offset in range(2_000):
            assert session.put(f"{store.url}/{prefix}{offset:020}.batch", data=b"batch").status_code == 200
    assert len(_list_all(store, prefix, page=1000)[0]) == 2_000  # the first listing reads what it has not seen
    assert store.process is not None
    before = _read_syscalls(store.process.pid)
    keys, _ = _list_all(store, prefix, page=1000)
    assert len(keys) == 2_000
    assert _read_syscalls(store.process.pid) - before < 1_000, "a listing read the disk for each object"
