#!/usr/bin/env node
// The local broker's object store: s3rver (file-backed S3), with writes made atomic.
//
// s3rver 3.7.1 writes an object in place: it truncates the file, then streams the request body into it.
// A client killed mid-upload (a kill -9 of the broker) leaves an empty or short object behind, and Tansu
// then fails to parse its partition watermark ("EOF while parsing a value"). Here every object and its
// metadata go to a temporary file first and replace the old one by rename only once the whole body,
// as long as its Content-Length says, has arrived.
//
// s3rver also ignores conditional writes (If-None-Match: * and If-Match: ETAG), which Tansu relies on: it
// caches each partition's watermark and writes it back with "create if absent" / "replace if unchanged",
// reloading only when S3 answers 412. Unanswered, a broker restarted after a kill -9 starts a partition's
// offsets again at 0 and overwrites acknowledged record batches. Here those conditions are honoured,
// atomically per key.
//
// Usage: node serve.js DIRECTORY ADDRESS PORT BUCKET
'use strict';

const crypto = require('crypto');
const fs = require('fs-extra');
const path = require('path');
const S3rver = require('s3rver');
const FilesystemStore = require('s3rver/lib/stores/filesystem');

async function writeAtomic(target, data) {
  const tmp = `${target}.${process.pid}.${crypto.randomBytes(6).toString('hex')}.tmp`;
  await fs.writeFile(tmp, data);
  await fs.rename(tmp, target);
}

function receive(content, tmp) {
  // Resolves with [size, md5] once the body is on disk; rejects if the sender went away first.
  return new Promise((resolve, reject) => {
    const md5 = crypto.createHash('md5');
    let size = 0;
    const out = fs.createWriteStream(tmp);
    out.on('error', reject);
    content.on('error', reject);
    content.on('aborted', () => reject(new Error('upload aborted by the client')));
    content.on('data', chunk => { md5.update(chunk); size += chunk.length; });
    out.on('finish', () => resolve([size, md5.digest('hex')]));
    content.pipe(out);
  });
}

FilesystemStore.prototype.putObject = async function putObject(object) {
  const objectPath = this.getResourcePath(object.bucket, object.key, 'object');
  await fs.mkdirp(path.dirname(objectPath));
  const tmp = `${objectPath}.${process.pid}.${crypto.randomBytes(6).toString('hex')}.tmp`;
  let size;
  let md5;
  try {
    if (Buffer.isBuffer(object.content)) {
      await fs.writeFile(tmp, object.content);
      size = object.content.length;
      md5 = crypto.createHash('md5').update(object.content).digest('hex');
    } else {
      [size, md5] = await receive(object.content, tmp);
    }
    const declared = object.metadata && object.metadata['content-length'];
    if (declared !== undefined && Number(declared) !== size) {
      throw new Error(`short upload: ${size} of ${declared} bytes`);
    }
  } catch (err) {
    await fs.remove(tmp);
    throw err;
  }
  await fs.rename(tmp, objectPath);
  await this.putMetadata(object.bucket, object.key, object.metadata, md5);
  return { size, md5 };
};

const putMetadata = FilesystemStore.prototype.putMetadata;
FilesystemStore.prototype.putMetadata = async function atomicPutMetadata(bucket, key, metadata, md5) {
  // Same content as s3rver writes, each file replaced by rename.
  const staging = Object.create(this);
  staging.getResourcePath = (b, k, resource) => `${this.getResourcePath(b, k, resource)}.staged`;
  await putMetadata.call(staging, bucket, key, metadata, md5);
  for (const resource of ['object.md5', 'metadata.json']) {
    const staged = `${this.getResourcePath(bucket, key, resource)}.staged`;
    if (await fs.pathExists(staged)) await fs.rename(staged, this.getResourcePath(bucket, key, resource));
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
    etag = (await fs.readFile(store.getResourcePath(bucket, key, 'object.md5'), 'utf8')).trim();
  } catch (err) {
    if (err.code !== 'ENOENT') throw err;
  }
  if (noneMatch !== undefined && etag !== null && (noneMatch.trim() === '*' || unquote(noneMatch) === etag)) {
    return 'If-None-Match';
  }
  if (match !== undefined && (etag === null || (match.trim() !== '*' && unquote(match) !== etag))) return 'If-Match';
  return null;
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

async function main() {
  const [directory, address, port, bucket] = process.argv.slice(2);
  if (!bucket) {
    console.error('usage: serve.js DIRECTORY ADDRESS PORT BUCKET');
    process.exit(2);
  }
  const server = new S3rver({ directory, address, port: Number(port), silent: true,
                              configureBuckets: [{ name: bucket, configs: [] }] });
  server.middleware.unshift(conditionalPuts(server.store)); // before s3rver's router writes anything
  const where = await server.run();
  console.log(`s3rver listening on ${where.address}:${where.port}, data in ${directory}`);
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch(err => { console.error(err); process.exit(1); });
