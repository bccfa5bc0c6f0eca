#!/usr/bin/env node
// The local broker's object store: s3rver (file-backed S3), with every write committed by one rename.
//
// s3rver 3.7.1 keeps a key as three files (the body, its MD5, its metadata) and writes them in place, so
// a kill -9 leaves short bodies, ETags of another body and unparsable metadata (every listing of the
// prefix then answers 500). Here a key is ONE file, `<key>._S3rver_object`, holding a header line (its
// MD5 and metadata) and the body. A PUT writes that file in full under a fresh name in `.staging/`
// (the store's root, outside every bucket, so listings never meet it), checks the body is as long as
// Content-Length said, and then renames it over the key; only then does S3 answer 200. A rename is
// atomic, so the key is at every moment either its previous whole file or its new whole file: an
// acknowledged PUT survives a kill -9 intact, an unacknowledged one either landed whole or left only a
// staged file, which the next start deletes. Readers open the file once and take header and body from
// that one descriptor, so a concurrent rename cannot mix two versions. (A kill -9 of this process keeps
// the page cache; losing power is not covered: nothing is fsynced.) A store written in s3rver's own
// layout is converted at start (`recover`), whatever state a kill left it in.
//
// s3rver also ignores conditional writes (If-None-Match: * and If-Match: ETAG), which Tansu relies on: it
// caches each partition's watermark and writes it back with "create if absent" / "replace if unchanged",
// reloading only when S3 answers 412. Here those conditions are honoured, atomically per key.
//
// Usage: node serve.js DIRECTORY ADDRESS PORT BUCKET
'use strict';

const { AsyncLocalStorage } = require('async_hooks');
const crypto = require('crypto');
const fs = require('fs-extra');
const path = require('path');
const { finished } = require('stream');
const S3rver = require('s3rver');
const FilesystemStore = require('s3rver/lib/stores/filesystem');
const S3Object = require('s3rver/lib/models/object');
const { pick, pickBy } = require('lodash');

// s3rver encrypts ListObjectsV2 continuation tokens with single DES, which the OpenSSL 3 of Node >= 17 no
// longer offers: every listing longer than one page (1,000 keys: a partition's batch objects soon are)
// answered 500, and Tansu could not read that partition again. Triple DES with the one key three times
// is the same cipher, and OpenSSL 3 still offers it.
for (const name of ['createCipheriv', 'createDecipheriv']) {
  const original = crypto[name];
  crypto[name] = (algorithm, key, iv, options) => (algorithm === 'des'
    ? original('des-ede3-cbc', Buffer.concat([key, key, key]), iv, options)
    : original(algorithm, key, iv, options));
}

const MAGIC = Buffer.from('TIDEMARK-S3-OBJECT 1\n');
const MD5_AT = MAGIC.length + '{"md5":"'.length; // the header's MD5 has a fixed place: written last
const NO_MD5 = '0'.repeat(32);
const STAGING = '.staging';
const LAYOUT_MARKER = '.one-file-per-key'; // in the store's root: every key is in this file's layout
const requestStreams = new AsyncLocalStorage(); // the body streams getObject opened for this request

function header(metadata, md5) {
  const kept = { ...pick(metadata, S3Object.ALLOWED_METADATA),
                 ...pickBy(metadata, (v, k) => k.startsWith('x-amz-meta-')) };
  return Buffer.concat([MAGIC, Buffer.from(`${JSON.stringify({ md5, metadata: kept })}\n`)]);
}

async function readHeader(fd, size) {
  // {md5, metadata, offset of the body}; the file is one this store committed, so a header is there.
  for (const length of [4096, 1 << 20]) {
    const buf = Buffer.alloc(Math.min(length, size));
    const { bytesRead } = await fs.read(fd, buf, 0, buf.length, 0);
    const end = buf.indexOf(10, MAGIC.length);
    if (!buf.slice(0, MAGIC.length).equals(MAGIC)) break;
    if (end !== -1) return { ...JSON.parse(buf.slice(MAGIC.length, end).toString()), offset: end + 1 };
    if (bytesRead < length) break;
  }
  throw new Error(`not an object of this store (no header): fd ${fd}`);
}

async function openObject(store, bucket, key) {
  // The key's file opened once: header, size and body all belong to one committed version.
  const fd = await fs.open(store.getResourcePath(bucket, key, 'object'), 'r');
  try {
    const stat = await fs.fstat(fd);
    const head = await readHeader(fd, stat.size);
    const metadata = { ...head.metadata, etag: JSON.stringify(head.md5),
                       'last-modified': stat.mtime.toUTCString(), 'content-length': stat.size - head.offset };
    return { fd, offset: head.offset, metadata };
  } catch (err) {
    await fs.close(fd);
    throw err;
  }
}

function receive(content, out) {
  // Resolves with [size, md5] once the body is written to `out`; rejects if the sender went away first,
  // also before this was called: a PUT that waited for its key while its client gave up has a request
  // already closed, whose 'aborted' is past and whose 'end' never comes.
  return new Promise((resolve, reject) => {
    const md5 = crypto.createHash('md5');
    let size = 0;
    out.on('error', reject);
    finished(content, err => { if (err) reject(err); });
    content.on('data', chunk => { md5.update(chunk); size += chunk.length; });
    out.on('finish', () => resolve([size, md5.digest('hex')]));
    content.pipe(out);
  });
}

async function commit(root, target, metadata, content, declared) {
  // Writes the key's whole file under a fresh staged name, then renames it over the key: the commit.
  const staging = path.join(root, STAGING);
  await fs.mkdirp(staging);
  const tmp = path.join(staging, `${crypto.randomBytes(12).toString('hex')}.tmp`);
  const out = fs.createWriteStream(tmp);
  try {
    out.write(header(metadata, NO_MD5));
    const [size, md5] = Buffer.isBuffer(content)
      ? await new Promise((resolve, reject) => {
        out.on('error', reject);
        out.end(content, () => resolve([content.length, crypto.createHash('md5').update(content).digest('hex')]));
      })
      : await receive(content, out);
    if (declared !== undefined && Number(declared) !== size) throw new Error(`short upload: ${size} of ${declared} bytes`);
    const fd = await fs.open(tmp, 'r+');
    try {
      await fs.write(fd, Buffer.from(md5), 0, 32, MD5_AT);
    } finally {
      await fs.close(fd);
    }
    await fs.mkdirp(path.dirname(target));
    await fs.rename(tmp, target);
    noteCommitted(root, target);
    return { size, md5 };
  } catch (err) {
    out.destroy(); // an upload cut short leaves its file open otherwise
    await fs.remove(tmp);
    throw err;
  }
}

FilesystemStore.prototype.getMetadata = async function getMetadata(bucket, key) {
  const { fd, metadata } = await openObject(this, bucket, key);
  await fs.close(fd);
  return metadata;
};

FilesystemStore.prototype.getObject = async function getObject(bucket, key, options) {
  let opened;
  try {
    opened = await openObject(this, bucket, key);
  } catch (err) {
    if (err.code === 'ENOENT') return null;
    throw err;
  }
  const { fd, offset, metadata } = opened;
  const lastByte = Math.max(0, Number(metadata['content-length']) - 1);
  const range = { start: (options && options.start) || 0,
                  end: Math.min((options && options.end) || Infinity, lastByte) };
  const ranged = options && (options.start !== undefined || options.end);
  let content = null;
  if (range.start < 0 || range.end < range.start) {
    await fs.close(fd); // the range is not satisfiable: s3rver answers InvalidRange
  } else {
    content = fs.createReadStream(null, { fd, start: offset + range.start, end: offset + range.end });
    const opened = requestStreams.getStore();
    if (opened) opened.push(content);
  }
  const object = new S3Object(bucket, key, content, metadata);
  if (ranged) object.range = range;
  return object;
};

FilesystemStore.prototype.putObject = async function putObject(object) {
  const target = this.getResourcePath(object.bucket, object.key, 'object');
  const declared = object.metadata && object.metadata['content-length'];
  return commit(this.rootDirectory, target, object.metadata, object.content, declared);
};

FilesystemStore.prototype.copyObject = async function copyObject(srcBucket, srcKey, destBucket, destKey, replacement) {
  const source = await this.getObject(srcBucket, srcKey);
  if (source === null) throw Object.assign(new Error(`no such key ${srcKey}`), { code: 'ENOENT' });
  const body = source.content === null ? Buffer.alloc(0) : source.content;
  await commit(this.rootDirectory, this.getResourcePath(destBucket, destKey, 'object'),
               replacement || source.metadata, body, source.metadata['content-length']);
  return this.getMetadata(destBucket, destKey);
};

FilesystemStore.prototype.putMetadata = async function putMetadata() {
  throw new Error('metadata lives in the object file: every write goes through commit()');
};

const listBuckets = FilesystemStore.prototype.listBuckets;
FilesystemStore.prototype.listBuckets = async function bucketsWithoutStaging() {
  return (await listBuckets.call(this)).filter(b => b.name !== STAGING);
};

// Listings. Tansu lists every batch object of a partition on each fetch that is behind the high
// watermark, page after page. s3rver walks the directory with readdirSync and statSync for every page and
// opens every listed object for its metadata, all on the one event-loop thread: at 9,000 objects a
// partition took 1.3 s to list, so a consumer with lag spent the store's whole time on listings, commits
// of the group's offsets timed out behind them, and the consumer read almost nothing (the wedge of the
// chaos runs). Here each directory's entries are read once and then kept up to date by this process's own
// commits and deletes (nothing else writes the store), and each object's listing metadata is read once
// per version: a page costs memory lookups only. The walk is in S3's key order (a directory `a` sorts as
// `a/`, after the key `a.json`), and a delimiter folds a whole subdirectory into its common prefix, as S3
// does (s3rver did neither).
const OBJECT_SUFFIX = '._S3rver_object';
const directories = new Map(); // directory path -> [{name, dir, order}] sorted by `order`
const listed = new Map(); // object file path -> {etag, size, mtime} of the version committed last
let changes = 0; // commits and deletes so far: a directory read while one happened may miss it

function entry(name, dir) {
  const order = dir ? `${name}/` : name.endsWith(OBJECT_SUFFIX) ? name.slice(0, -OBJECT_SUFFIX.length) : name;
  return { name, dir, order: FilesystemStore.decodeKeyPath(order) };
}

async function readEntries(dirPath) {
  try {
    return (await fs.readdir(dirPath, { withFileTypes: true })).map(d => entry(d.name, d.isDirectory()))
      .sort((a, b) => (a.order < b.order ? -1 : a.order > b.order ? 1 : 0));
  } catch (err) {
    if (err.code === 'ENOENT') return [];
    throw err;
  }
}

async function entries(dirPath) {
  const cached = directories.get(dirPath);
  if (cached !== undefined) return cached;
  for (let attempt = 0; ; attempt += 1) {
    const before = changes;
    const read = await readEntries(dirPath);
    if (directories.has(dirPath)) return directories.get(dirPath); // another listing cached it meanwhile
    if (changes === before) {
      directories.set(dirPath, read);
      return read;
    }
    if (attempt === 3) return read; // the store is busy writing: serve this read, cache a later one
  }
}

function lowerBound(list, order) {
  // The index of the first entry not before `order`.
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid].order < order) lo = mid + 1; else hi = mid;
  }
  return lo;
}

function sortedInsert(list, item) {
  const at = lowerBound(list, item.order);
  if (list[at] && list[at].name === item.name) list[at] = item; else list.splice(at, 0, item);
}

function firstAfter(list, keyDir, startAfter) {
  // Where a page resumes in a directory: entries whose keys all sort before startAfter are skipped by a
  // binary search, so listing a partition page by page costs O(page), not O(objects) a page.
  if (!startAfter.startsWith(keyDir)) return 0;
  const rest = startAfter.slice(keyDir.length);
  const at = lowerBound(list, rest);
  const previous = list[at - 1];
  return previous && previous.dir && rest.startsWith(previous.order) ? at - 1 : at; // startAfter is inside it
}

function noteCommitted(root, target) {
  // A rename made `target`: its directory (and each new directory above it) gains an entry, if cached.
  changes += 1;
  listed.delete(target);
  let child = entry(path.basename(target), false);
  for (let dir = path.dirname(target); dir.startsWith(root) && dir !== root; dir = path.dirname(dir)) {
    const cached = directories.get(dir);
    if (cached !== undefined) {
      const before = cached.length;
      sortedInsert(cached, child);
      if (cached.length === before) return; // it was there already, and so was everything above it
    }
    child = entry(path.basename(dir), true);
  }
}

function forget(root, file) {
  // A delete: the object's listing metadata and every cached directory from its own up to the root
  // (s3rver removes directories left empty) are read again when next listed.
  changes += 1;
  listed.delete(file);
  for (let dir = path.dirname(file); dir.startsWith(root); dir = path.dirname(dir)) {
    directories.delete(dir);
    if (dir === root) break;
  }
}

async function hasObject(dirPath) {
  for (const e of await entries(dirPath)) {
    if (e.dir ? await hasObject(path.join(dirPath, e.name)) : e.name.endsWith(OBJECT_SUFFIX)) return true;
  }
  return false;
}

async function* walk(dirPath, keyDir, query) {
  // {key} of every object and {prefix} of every subdirectory a delimiter folds, in S3's key order.
  const { prefix, delimiter, startAfter } = query;
  const list = await entries(dirPath);
  for (let i = firstAfter(list, keyDir, startAfter); i < list.length; i += 1) {
    const e = list[i];
    if (!e.dir) {
      if (e.name.endsWith(OBJECT_SUFFIX)) yield { key: keyDir + e.order };
      continue;
    }
    const sub = keyDir + e.order;
    if (!sub.startsWith(prefix) && !prefix.startsWith(sub)) continue;
    if (sub < startAfter && !startAfter.startsWith(sub)) continue; // every key under it is before startAfter
    const cut = delimiter && sub.startsWith(prefix) ? sub.indexOf(delimiter, prefix.length) : -1;
    if (cut === -1) yield* walk(path.join(dirPath, e.name), sub, query);
    else if (await hasObject(path.join(dirPath, e.name))) yield { prefix: sub.slice(0, cut + delimiter.length) };
  }
}

async function listingMetadata(store, bucket, key) {
  const file = store.getResourcePath(bucket, key, 'object');
  let known = listed.get(file);
  if (known === undefined) {
    const before = changes;
    const metadata = await store.getMetadata(bucket, key);
    known = { etag: metadata.etag, size: metadata['content-length'], mtime: metadata['last-modified'] };
    if (changes === before) listed.set(file, known); // else it may be the version just replaced
  }
  return { etag: known.etag, 'content-length': known.size, 'last-modified': known.mtime };
}

async function listKeys(bucketPath, query, maxKeys) {
  // The page: keys after startAfter under prefix (at most maxKeys) and the common prefixes before its end.
  const { prefix, delimiter, startAfter } = query;
  const keys = [];
  const prefixes = new Set();
  for await (const item of walk(bucketPath, '', query)) {
    const cut = item.key !== undefined && delimiter ? item.key.indexOf(delimiter, prefix.length) : -1;
    const folded = item.prefix !== undefined ? item.prefix : cut !== -1 ? item.key.slice(0, cut + delimiter.length) : null;
    if (folded !== null) {
      if (folded > startAfter) prefixes.add(folded);
    } else if (item.key <= startAfter || !item.key.startsWith(prefix) || item.key <= keys[keys.length - 1]) {
      continue; // the last test: a commit inserted before the walk's place and shifted the entry it revisits
    } else if (keys.length < maxKeys) {
      keys.push(item.key);
    } else {
      // The next page starts after this page's last key: the prefixes after it are that page's.
      return { keys, prefixes: [...prefixes].filter(p => p < keys[keys.length - 1]), isTruncated: true };
    }
  }
  return { keys, prefixes: [...prefixes], isTruncated: false };
}

FilesystemStore.prototype.listObjects = async function listObjects(bucket, options) {
  const { delimiter = '', startAfter = '', prefix = '', maxKeys = Infinity } = options;
  const page = await listKeys(this.getBucketPath(bucket), { prefix, delimiter, startAfter }, maxKeys);
  const metadata = await Promise.all(page.keys.map(key => listingMetadata(this, bucket, key).catch(err => {
    if (err.code === 'ENOENT') return undefined; // deleted since its directory was read
    throw err;
  })));
  const objects = page.keys.map((key, i) => metadata[i] && new S3Object(bucket, key, null, metadata[i])).filter(Boolean);
  return { objects, commonPrefixes: page.prefixes.sort(), isTruncated: page.isTruncated };
};

const deleteObject = FilesystemStore.prototype.deleteObject;
FilesystemStore.prototype.deleteObject = async function forgettingDelete(bucket, key) {
  try {
    await deleteObject.call(this, bucket, key);
  } finally {
    forget(this.rootDirectory, this.getResourcePath(bucket, key, 'object'));
  }
};

const deleteBucket = FilesystemStore.prototype.deleteBucket;
FilesystemStore.prototype.deleteBucket = async function forgettingDeleteBucket(bucket) {
  try {
    await deleteBucket.call(this, bucket);
  } finally {
    changes += 1;
    directories.clear();
    listed.clear();
  }
};

const keyLocks = new Map();

async function withKeyLock(key, fn) {
  // Requests for one key run one after another: a condition checked stays true until the write is done.
  const previous = keyLocks.get(key) || Promise.resolve();
  let release;
  const mine = new Promise(resolve => { release = resolve; });
  const tail = previous.then(() => mine);
  keyLocks.set(key, tail);
  await previous;
  try {
    return await fn();
  } finally {
    release();
    if (keyLocks.get(key) === tail) keyLocks.delete(key);
  }
}

const unquote = etag => String(etag).trim().replace(/^W\//, '').replace(/^"|"$/g, '');

async function failedCondition(store, bucket, key, headers) {
  const noneMatch = headers['if-none-match'];
  const match = headers['if-match'];
  if (!noneMatch && !match) return null;
  let etag = null;
  try {
    etag = unquote((await store.getMetadata(bucket, key)).etag);
  } catch (err) {
    if (err.code !== 'ENOENT') throw err;
  }
  if (noneMatch !== undefined && etag !== null && (noneMatch.trim() === '*' || unquote(noneMatch) === etag)) {
    return 'If-None-Match';
  }
  if (match !== undefined && (etag === null || (match.trim() !== '*' && unquote(match) !== etag))) return 'If-Match';
  return null;
}

function closeUnsentBodies() {
  // s3rver opens an object's body before it checks If-None-Match / If-Modified-Since and answers 304
  // without it; Tansu's watermark reads are nearly all 304. A body not sent is closed here, or every such
  // answer keeps a file descriptor until the store can open no file at all.
  return async (ctx, next) => {
    const opened = [];
    try {
      await requestStreams.run(opened, next);
    } finally {
      for (const stream of opened) if (ctx.body !== stream) stream.destroy();
    }
  };
}

function conditionalPuts(store) {
  return async (ctx, next) => {
    if (ctx.method !== 'PUT' || ctx.querystring || ctx.headers['x-amz-copy-source']) return next();
    const [bucket, ...parts] = ctx.path.replace(/^\//, '').split('/').map(decodeURIComponent);
    if (!bucket || parts.length === 0) return next();
    const key = parts.join('/');
    return withKeyLock(`${bucket}/${key}`, async () => {
      const condition = await failedCondition(store, bucket, key, ctx.headers);
      if (condition === null) return next();
      ctx.req.resume(); // discard the body
      ctx.status = 412;
      ctx.type = 'application/xml';
      ctx.body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>PreconditionFailed</Code>' +
        `<Message>At least one of the pre-conditions you specified did not hold</Message><Condition>${condition}</Condition></Error>`;
      return undefined;
    });
  };
}

const SIDECAR = /^(.*)\._S3rver_(object\.md5|metadata\.json)(\.staged)?$/;
const OLD_STAGED_BODY = /\._S3rver_object\.\d+\.[0-9a-f]+\.tmp$/;

async function readJson(file) {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8'));
  } catch (err) {
    return undefined; // absent, or cut short by a kill
  }
}

async function convertKey(root, directory, base) {
  // A key in s3rver's layout: its body file is whole (it was renamed into place), its MD5 is recomputed
  // from it, its metadata is the newest that parses (a staged file is newer than the one it replaces).
  const objectPath = path.join(directory, `${base}._S3rver_object`);
  const fd = await fs.open(objectPath, 'r');
  const start = Buffer.alloc(MAGIC.length);
  try {
    await fs.read(fd, start, 0, MAGIC.length, 0);
  } finally {
    await fs.close(fd);
  }
  if (!start.equals(MAGIC)) {
    const body = await fs.readFile(objectPath);
    const metadata = (await readJson(`${path.join(directory, base)}._S3rver_metadata.json.staged`))
      || (await readJson(`${path.join(directory, base)}._S3rver_metadata.json`)) || {};
    await commit(root, objectPath, metadata, body, undefined);
  }
}

async function recoverDirectory(root, directory) {
  const dirents = await fs.readdir(directory, { withFileTypes: true });
  const names = dirents.map(d => d.name);
  for (const dirent of dirents) {
    const { name } = dirent;
    const file = path.join(directory, name);
    if (dirent.isDirectory()) {
      if (!name.endsWith('._S3rver_uploads')) await recoverDirectory(root, file);
    } else if (OLD_STAGED_BODY.test(name)) {
      await fs.remove(file); // s3rver-layout body never renamed: its PUT was never acknowledged
    } else if (name.endsWith('._S3rver_object')) {
      await convertKey(root, directory, name.slice(0, -'._S3rver_object'.length));
    }
  }
  for (const name of names) {
    const sidecar = SIDECAR.exec(name);
    if (sidecar) await fs.remove(path.join(directory, name)); // now in the object file
  }
}

async function recover(root, bucket) {
  // Before serving: staged files are PUTs never acknowledged; a store in s3rver's layout (from before this
  // file, or cut by a kill -9 in any state) becomes one file per key. Each step is a rename or a removal
  // of what is already elsewhere, so a kill during recovery leaves a state the next start recovers.
  await fs.remove(path.join(root, STAGING));
  const marker = path.join(root, LAYOUT_MARKER);
  if (await fs.pathExists(marker)) return; // converted before: this file never writes the old layout
  const bucketPath = path.join(root, bucket);
  if (await fs.pathExists(bucketPath)) await recoverDirectory(root, bucketPath);
  await fs.writeFile(marker, 'one file per key, committed by rename\n'); // a start after this skips the walk
}

async function main() {
  const [directory, address, port, bucket] = process.argv.slice(2);
  if (!bucket) {
    console.error('usage: serve.js DIRECTORY ADDRESS PORT BUCKET');
    process.exit(2);
  }
  await recover(directory, bucket);
  const server = new S3rver({ directory, address, port: Number(port), silent: true,
                              configureBuckets: [{ name: bucket, configs: [] }] });
  server.middleware.unshift(conditionalPuts(server.store)); // before s3rver's router writes anything
  server.middleware.unshift(closeUnsentBodies());
  const where = await server.run();
  console.log(`s3rver listening on ${where.address}:${where.port}, data in ${directory}`);
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch(err => { console.error(err); process.exit(1); });
