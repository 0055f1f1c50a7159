#!/usr/bin/env node
/* server.js - the S3-compatible server voxd's tests run on loopback: s3rver
 * (objects, ranges, multipart) behind our own strict AWS SigV4 verifier,
 * because s3rver accepts unsigned and wrongly signed V4 requests. Every
 * request must be signed (Authorization header or presigned query) with the
 * test credentials, in the configured region, unexpired; anything else is a
 * 403 like AWS gives. Also: virtual-host addressing for <bucket>.localhost,
 * multipart abort (s3rver lacks it), and /__control/ for fault injection.
 * Test-only code: never part of voxd. Usage (see s3server.sh):
 *   node server.js --dir DATA --port N --port-file FILE [--owner PID]
 * Env: S3_TEST_ACCESS_KEY, S3_TEST_SECRET_KEY, S3_TEST_REGION, S3_TEST_BUCKET,
 *      S3_TEST_SESSION_TOKEN (optional: then every request must carry it). */
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const path = require('path');
const S3rver = require('s3rver');

const cfg = {
  accessKey: process.env.S3_TEST_ACCESS_KEY || 'VOXDTESTKEY',
  secretKey: process.env.S3_TEST_SECRET_KEY || 'voxd-test-secret',
  region: process.env.S3_TEST_REGION || 'us-east-1',
  bucket: process.env.S3_TEST_BUCKET || 'voxd-test',
  sessionToken: process.env.S3_TEST_SESSION_TOKEN || '',
};

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const dataDir = arg('--dir');
const port = Number(arg('--port', '0'));
const portFile = arg('--port-file');
const owner = Number(arg('--owner', '0'));
if (!dataDir) {
  process.stderr.write('usage: server.js --dir DATA [--port N] [--port-file FILE]\n');
  process.exit(2);
}
fs.mkdirSync(dataDir, { recursive: true });

/* Faults to inject: the next `count` requests (of `method`, if given) get
 * `status` (0 = the connection is dropped without an answer). */
const faults = [];

function xmlError(res, status, code, message) {
  const body =
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>' + code +
    '</Code><Message>' + message + '</Message></Error>';
  res.writeHead(status, {
    'Content-Type': 'application/xml',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}

class Denied extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/* RFC 3986 encoding as SigV4 wants it: only A-Za-z0-9-._~ stay literal. */
function uriEncode(s) {
  return encodeURIComponent(s).replace(/[!'()*]/g, c =>
    '%' + c.charCodeAt(0).toString(16).toUpperCase());
}

function decode(s) {
  try {
    return decodeURIComponent(s);
  } catch (e) {
    throw new Denied('InvalidURI', 'Could not parse the specified URI.');
  }
}

function canonicalUri(rawPath) {
  return rawPath.split('/').map(seg => uriEncode(decode(seg))).join('/');
}

/* Parses the raw query into [key, value] pairs, decoded. */
function queryPairs(rawQuery) {
  if (!rawQuery) return [];
  return rawQuery.split('&').filter(p => p.length).map(p => {
    const eq = p.indexOf('=');
    return eq < 0 ? [decode(p), ''] : [decode(p.slice(0, eq)), decode(p.slice(eq + 1))];
  });
}

function canonicalQuery(pairs) {
  return pairs
    .map(([k, v]) => [uriEncode(k), uriEncode(v)])
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([k, v]) => k + '=' + v)
    .join('&');
}

function hmac(key, data) {
  return crypto.createHmac('sha256', key).update(data, 'utf8').digest();
}

function sha256hex(data) {
  return crypto.createHash('sha256').update(data, 'utf8').digest('hex');
}

/* "20130524T000000Z" -> Date, or null. */
function parseAmzDate(s) {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s || '');
  if (!m) return null;
  return new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]));
}

/* Throws Denied unless the request carries a valid SigV4 signature. */
function verify(req, rawPath, rawQuery) {
  const pairs = queryPairs(rawQuery);
  const q = Object.fromEntries(pairs);
  const header = req.headers.authorization;
  const presigned = 'X-Amz-Algorithm' in q;
  let credential, signedHeaders, signature, amzDate, payloadHash, token;
  if (header && presigned) throw new Denied('InvalidArgument', 'Only one auth mechanism allowed.');
  if (header) {
    const m = /^AWS4-HMAC-SHA256 +Credential=([^,\s]+), *SignedHeaders=([^,\s]+), *Signature=([0-9a-f]{64})$/.exec(header);
    if (!m) throw new Denied('AuthorizationHeaderMalformed', 'The authorization header is malformed.');
    [, credential, signedHeaders, signature] = m;
    amzDate = req.headers['x-amz-date'];
    payloadHash = req.headers['x-amz-content-sha256'];
    token = req.headers['x-amz-security-token'];
    if (!payloadHash) throw new Denied('InvalidRequest', 'Missing required header: x-amz-content-sha256.');
    const when = parseAmzDate(amzDate);
    if (!when) throw new Denied('AccessDenied', 'AWS authentication requires a valid x-amz-date header.');
    if (Math.abs(Date.now() - when.getTime()) > 15 * 60 * 1000)
      throw new Denied('RequestTimeTooSkewed', 'The difference between the request time and the current time is too large.');
  } else if (presigned) {
    if (q['X-Amz-Algorithm'] !== 'AWS4-HMAC-SHA256')
      throw new Denied('AuthorizationQueryParametersError', 'X-Amz-Algorithm only supports AWS4-HMAC-SHA256.');
    for (const k of ['X-Amz-Credential', 'X-Amz-Date', 'X-Amz-Expires', 'X-Amz-SignedHeaders', 'X-Amz-Signature'])
      if (!(k in q)) throw new Denied('AuthorizationQueryParametersError', 'Missing ' + k + '.');
    credential = q['X-Amz-Credential'];
    signedHeaders = q['X-Amz-SignedHeaders'];
    signature = q['X-Amz-Signature'];
    amzDate = q['X-Amz-Date'];
    payloadHash = q['X-Amz-Content-Sha256'] || 'UNSIGNED-PAYLOAD';
    token = q['X-Amz-Security-Token'];
    const when = parseAmzDate(amzDate);
    const expires = Number(q['X-Amz-Expires']);
    if (!when) throw new Denied('AuthorizationQueryParametersError', 'X-Amz-Date must be in the ISO8601 Long Format.');
    if (!Number.isInteger(expires) || expires < 1 || expires > 604800)
      throw new Denied('AuthorizationQueryParametersError', 'X-Amz-Expires must be between 1 and 604800.');
    if (Date.now() > when.getTime() + expires * 1000) throw new Denied('AccessDenied', 'Request has expired.');
    if (when.getTime() > Date.now() + 15 * 60 * 1000) throw new Denied('AccessDenied', 'Request is not valid yet.');
  } else {
    throw new Denied('AccessDenied', 'Anonymous access is denied.');
  }

  const scope = credential.split('/');
  if (scope.length !== 5 || scope[4] !== 'aws4_request' || scope[3] !== 's3')
    throw new Denied('AuthorizationHeaderMalformed', 'The credential scope is malformed.');
  const [keyId, day, region] = scope;
  if (keyId !== cfg.accessKey) throw new Denied('InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist.');
  if (day !== amzDate.slice(0, 8)) throw new Denied('AuthorizationHeaderMalformed', 'The credential date does not match the request date.');
  if (region !== cfg.region)
    throw new Denied('AuthorizationHeaderMalformed', "The region '" + region + "' is wrong; expecting '" + cfg.region + "'.");
  const names = signedHeaders.split(';');
  if (!names.includes('host')) throw new Denied('AccessDenied', 'The host header must be signed.');
  if (names.join(';') !== [...names].sort().join(';'))
    throw new Denied('SignatureDoesNotMatch', 'SignedHeaders must be sorted.');
  if (header && !names.includes('x-amz-date')) throw new Denied('AccessDenied', 'x-amz-date must be signed.');
  if (cfg.sessionToken) {
    if (token !== cfg.sessionToken) throw new Denied('InvalidToken', 'The provided token is malformed or otherwise invalid.');
    if (header && !names.includes('x-amz-security-token'))
      throw new Denied('AccessDenied', 'x-amz-security-token must be signed.');
  }

  const canonicalHeaders = names.map(n => {
    const v = req.headers[n];
    if (v === undefined) throw new Denied('AccessDenied', 'A signed header is missing: ' + n + '.');
    return n + ':' + String(v).trim().replace(/ +/g, ' ') + '\n';
  }).join('');
  const canonicalRequest = [
    req.method,
    canonicalUri(rawPath),
    canonicalQuery(presigned ? pairs.filter(([k]) => k !== 'X-Amz-Signature') : pairs),
    canonicalHeaders,
    signedHeaders,
    payloadHash,
  ].join('\n');
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope.slice(1).join('/'), sha256hex(canonicalRequest)].join('\n');
  let key = hmac('AWS4' + cfg.secretKey, day);
  key = hmac(key, region);
  key = hmac(key, 's3');
  key = hmac(key, 'aws4_request');
  const expected = hmac(key, stringToSign);
  const given = Buffer.from(signature, 'hex');
  if (given.length !== 32 || !crypto.timingSafeEqual(given, expected)) {
    if (process.env.S3_TEST_DEBUG) process.stderr.write('canonical request:\n' + canonicalRequest + '\n');
    throw new Denied('SignatureDoesNotMatch',
      'The request signature we calculated does not match the signature you provided.');
  }
}

/* Test hooks on loopback, outside the S3 namespace (no bucket starts "__"). */
function control(req, res, rawPath, rawQuery) {
  const q = Object.fromEntries(queryPairs(rawQuery));
  if (rawPath === '/__control/fault' && req.method === 'POST') {
    faults.push({ status: Number(q.status || 503), count: Number(q.count || 1), method: q.method || '' });
    res.writeHead(204);
    return res.end();
  }
  if (rawPath === '/__control/clear' && req.method === 'POST') {
    faults.length = 0;
    res.writeHead(204);
    return res.end();
  }
  if (rawPath === '/__control/uploads' && req.method === 'GET') {
    const dir = s3.store.getResourcePath(q.bucket || cfg.bucket, undefined, 'uploads');
    let n = 0;
    try {
      n = fs.readdirSync(dir).length;
    } catch (e) {
      n = 0;
    }
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    return res.end(String(n) + '\n');
  }
  return xmlError(res, 404, 'NoSuchControl', 'Unknown control request.');
}

function takeFault(method) {
  const f = faults.find(x => x.count > 0 && (!x.method || x.method === method));
  if (!f) return null;
  f.count--;
  return f;
}

/* s3rver has no AbortMultipartUpload: drop the upload's parts ourselves. */
async function abortUpload(res, bucket, uploadId) {
  if (!/^[0-9a-f]+$/.test(uploadId)) return xmlError(res, 404, 'NoSuchUpload', 'The specified upload does not exist.');
  const dir = path.join(s3.store.getResourcePath(bucket, undefined, 'uploads'), uploadId);
  if (!fs.existsSync(dir)) return xmlError(res, 404, 'NoSuchUpload', 'The specified upload does not exist.');
  fs.rmSync(dir, { recursive: true, force: true });
  res.writeHead(204);
  res.end();
}

const s3 = new S3rver({
  silent: true,
  directory: dataDir,
  configureBuckets: [{ name: cfg.bucket }],
  vhostBuckets: false,
});
const s3handler = s3.callback();
s3.on('error', (err, ctx) => {
  if (!ctx || ctx.status >= 500) process.stderr.write('s3rver error: ' + (err && err.message) + '\n');
});

function handle(req, res) {
  const qi = req.url.indexOf('?');
  const rawPath = qi < 0 ? req.url : req.url.slice(0, qi);
  const rawQuery = qi < 0 ? '' : req.url.slice(qi + 1);
  if (rawPath.startsWith('/__control/')) return control(req, res, rawPath, rawQuery);
  const fault = takeFault(req.method);
  if (fault) {
    if (fault.status === 0) return req.socket.destroy();
    return xmlError(res, fault.status, fault.status >= 500 ? 'ServiceUnavailable' : 'InjectedFault', 'Injected fault.');
  }
  try {
    verify(req, rawPath, rawQuery);
  } catch (e) {
    if (!(e instanceof Denied)) throw e;
    process.stderr.write('denied ' + req.method + ' ' + rawPath + ': ' + e.code + ' (' + e.message + ')\n');
    req.resume();
    return xmlError(res, e.code === 'InvalidURI' ? 400 : 403, e.code, e.message);
  }
  /* Verified: s3rver sees an anonymous request (it knows only its own
   * account), so the signature parts go. */
  delete req.headers.authorization;
  const kept = rawQuery.split('&').filter(p => p.length && !/^X-Amz-/i.test(p)).join('&');
  /* Virtual-host style: <bucket>.localhost[:port] becomes path style. */
  const host = String(req.headers.host || '');
  const m = /^([a-z0-9][a-z0-9.-]*)\.localhost(:\d+)?$/.exec(host);
  let bucketPath = rawPath;
  if (m) {
    bucketPath = '/' + m[1] + rawPath;
    req.headers.host = 'localhost' + (m[2] || '');
  }
  req.url = bucketPath + (kept ? '?' + kept : '');
  const q = Object.fromEntries(queryPairs(kept));
  if (req.method === 'DELETE' && 'uploadId' in q) {
    const bucket = decode(bucketPath.split('/')[1] || '');
    return abortUpload(res, bucket, q.uploadId).catch(() => xmlError(res, 500, 'InternalError', 'Abort failed.'));
  }
  const ifMatch = req.headers['if-match'];
  if (ifMatch && (req.method === 'GET' || req.method === 'HEAD')) {
    return checkIfMatch(bucketPath, ifMatch)
      .then(ok => (ok ? s3handler(req, res) : xmlError(res, 412, 'PreconditionFailed',
        'At least one of the pre-conditions you specified did not hold.')))
      .catch(() => xmlError(res, 500, 'InternalError', 'If-Match check failed.'));
  }
  return s3handler(req, res);
}

/* s3rver ignores If-Match; readers rely on it to notice a replaced object.
 * A missing object passes (s3rver then answers 404). */
async function checkIfMatch(bucketPath, ifMatch) {
  const parts = bucketPath.split('/');
  const bucket = decode(parts[1] || '');
  const key = parts.slice(2).map(decode).join('/');
  let meta;
  try {
    meta = await s3.store.getMetadata(bucket, key);
  } catch (e) {
    return true;
  }
  const strip = t => String(t).trim().replace(/^W\//, '').replace(/"/g, '');
  return ifMatch.split(',').some(t => strip(t) === '*' || strip(t) === strip(meta.etag));
}

s3.configureBuckets().then(() => {
  const server = http.createServer(handle);
  server.listen(port, '127.0.0.1', () => {
    const actual = server.address().port;
    if (portFile) {
      fs.writeFileSync(portFile + '.tmp', String(actual) + '\n');
      fs.renameSync(portFile + '.tmp', portFile);
    }
    process.stdout.write('s3 test server on 127.0.0.1:' + actual + ' bucket ' + cfg.bucket + '\n');
  });
  /* A test that crashed never stops us: leave with the process that owns us. */
  if (owner > 0) {
    setInterval(() => {
      try {
        process.kill(owner, 0);
      } catch (e) {
        if (e.code === 'ESRCH') process.exit(0);
      }
    }, 1000).unref();
  }
  /* Objects are written to disk before any answer, so stopping at once loses nothing. */
  process.on('SIGTERM', () => process.exit(0));
  process.on('SIGINT', () => process.exit(0));
}).catch(err => {
  process.stderr.write('s3 test server failed to start: ' + err.message + '\n');
  process.exit(1);
});
