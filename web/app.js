// app.js - the voxd web UI: talks to the same-origin /v1 API (docs/api.md),
// renders every view of index.html and polls the jobs list while jobs run.
// Every server string reaches the page through textContent or attribute
// values, never as HTML. Credentials live in sessionStorage only.

/* ------------------------------------------------------------------ */
/* small DOM helpers                                                   */
/* ------------------------------------------------------------------ */

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

// Properties set directly (booleans and live values); everything else is an
// attribute. Children are nodes or strings (strings become text nodes).
const PROPS = new Set(['value', 'checked', 'disabled', 'hidden', 'selected', 'open', 'max', 'min', 'step']);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = String(value);
    else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else if (PROPS.has(key)) node[key] = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

function setText(node, value) { node.textContent = value === null || value === undefined ? '' : String(value); }

/* ------------------------------------------------------------------ */
/* formatting                                                          */
/* ------------------------------------------------------------------ */

const creditsFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 6 });
const percentFormat = new Intl.NumberFormat(undefined, { style: 'percent', maximumFractionDigits: 0 });

function fmtCredits(v) { return typeof v === 'number' && Number.isFinite(v) ? creditsFormat.format(v === 0 ? 0 : v) : '–'; }
function fmtSigned(v) {
  if (typeof v !== 'number' || !Number.isFinite(v)) return '–';
  return (v > 0 ? '+' : v < 0 ? '−' : '') + creditsFormat.format(Math.abs(v));
}
function fmtTime(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
}
function timeEl(iso) { return iso ? el('time', { datetime: iso, text: fmtTime(iso) }) : '–'; }
function fmtBytes(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '–';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}
function fmtDuration(s) {
  if (typeof s !== 'number' || !Number.isFinite(s)) return '–';
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.round(s % 60);
  return h ? `${h} h ${m} min` : `${m} min ${sec} s`;
}
function pretty(value) { return JSON.stringify(value, null, 2); }

// Random token for Idempotency-Key; getRandomValues works without a secure context.
function newIdempotencyKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return 'web-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/* ------------------------------------------------------------------ */
/* state and the API client                                            */
/* ------------------------------------------------------------------ */

const STORE_TOKEN = 'voxd.token';
const STORE_KIND = 'voxd.kind';          // "jwt" | "key"
const STORE_EXPIRES = 'voxd.expires';    // ms epoch, JWT only
const STORE_TOPUP_OFF = 'voxd.topup_off';

const state = {
  token: sessionStorage.getItem(STORE_TOKEN),
  kind: sessionStorage.getItem(STORE_KIND) || 'jwt',
  me: null,
  models: [],
  balance: null,
  view: null,
};

class ApiError extends Error {
  constructor(status, code, message, requestId) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId || null;
  }
}

const NETWORK_ERROR = () => new ApiError(0, 'network_error', 'Cannot reach the server. Check the connection and try again.');

function errorFrom(status, data, requestId) {
  const e = data && typeof data === 'object' ? data.error : null;
  if (e && typeof e.code === 'string') {
    return new ApiError(status, e.code, typeof e.message === 'string' && e.message ? e.message : e.code, requestId);
  }
  return new ApiError(status, `http_${status}`, `The server answered ${status} without an error message.`, requestId);
}

function authHeaders(extra = {}) {
  const h = new Headers(extra);
  if (state.token) h.set('Authorization', `Bearer ${state.token}`);
  return h;
}

// Credentials refused: drop them and say why, once.
const SIGN_OUT_CODES = new Set(['token_expired', 'invalid_token', 'invalid_api_key', 'invalid_authorization',
  'missing_credentials', 'account_disabled']);

function checkAuthLost(err) {
  if (!state.token || !SIGN_OUT_CODES.has(err.code)) return;
  const why = err.code === 'token_expired' ? 'Your session expired. Please log in again.'
    : err.code === 'account_disabled' ? err.message
      : `Signed out: ${err.message}`;
  signOut(why);
}

// JSON API call. Returns the parsed body (null for 204); throws ApiError.
async function api(method, path, { json, auth = true, idempotencyKey } = {}) {
  const headers = auth ? authHeaders() : new Headers();
  let body;
  if (json !== undefined) {
    headers.set('Content-Type', 'application/json');
    body = JSON.stringify(json);
  }
  if (idempotencyKey) headers.set('Idempotency-Key', idempotencyKey);
  let res;
  try {
    res = await fetch(path, { method, headers, body, cache: 'no-store' });
  } catch {
    throw NETWORK_ERROR();
  }
  const requestId = res.headers.get('X-Request-Id');
  let data = null;
  if (res.status !== 204) {
    const text = await res.text().catch(() => '');
    if (text) {
      try { data = JSON.parse(text); } catch { data = null; }
    }
  }
  if (!res.ok) {
    const err = errorFrom(res.status, data, requestId);
    if (auth) checkAuthLost(err);
    throw err;
  }
  return data;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v !== null && v !== undefined) q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

/* ------------------------------------------------------------------ */
/* messages                                                            */
/* ------------------------------------------------------------------ */

function errorNodes(err) {
  const detail = [err.code];
  if (err.status) detail.unshift(String(err.status));
  if (err.requestId) detail.push(`request ${err.requestId}`);
  return [el('span', { text: err.message || 'Something went wrong.' }), ' ', el('span', { class: 'err-code', text: `(${detail.join(' · ')})` })];
}

function showError(target, err) {
  if (!target) return;
  if (!(err instanceof ApiError)) err = new ApiError(0, 'client_error', err && err.message ? err.message : String(err));
  target.replaceChildren(...errorNodes(err));
  target.hidden = false;
}
function clearError(target) { if (target) { target.hidden = true; target.replaceChildren(); } }
function formError(form) { return $('.form-error', form); }

function showBanner(text) {
  setText($('#banner-text'), text);
  $('#banner').hidden = false;
}
function hideBanner() { $('#banner').hidden = true; }

async function withBusy(button, fn) {
  const was = button.disabled;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try { return await fn(); } finally {
    button.disabled = was;
    button.removeAttribute('aria-busy');
  }
}

/* ------------------------------------------------------------------ */
/* session                                                             */
/* ------------------------------------------------------------------ */

function saveSession(token, kind, expiresIn) {
  state.token = token;
  state.kind = kind;
  sessionStorage.setItem(STORE_TOKEN, token);
  sessionStorage.setItem(STORE_KIND, kind);
  if (kind === 'jwt' && expiresIn) sessionStorage.setItem(STORE_EXPIRES, String(Date.now() + expiresIn * 1000));
  else sessionStorage.removeItem(STORE_EXPIRES);
}

function signOut(message) {
  state.token = null;
  state.me = null;
  state.balance = null;
  for (const k of [STORE_TOKEN, STORE_KIND, STORE_EXPIRES, STORE_TOPUP_OFF]) sessionStorage.removeItem(k);
  stopPolling();
  jobsList.reset();
  adminJobsList.reset();
  // Nothing of the previous account may linger on screen.
  for (const tbody of $$('table tbody')) tbody.replaceChildren();
  $('#new-key-value').value = '';
  $('#new-key').hidden = true;
  $('#form-credits').hidden = true;
  $('#audit-result').hidden = true;
  setText($('#pill-balance'), '–');
  if (message) showBanner(message); else hideBanner();
  route();
}

async function startSession() {
  const exp = Number(sessionStorage.getItem(STORE_EXPIRES) || 0);
  if (state.kind === 'jwt' && exp && exp <= Date.now()) {
    signOut('Your session expired. Please log in again.');
    return false;
  }
  state.me = await api('GET', '/v1/me');
  renderAccount();
  loadModels().catch((err) => showError($('#models-error'), err));
  refreshBalance().catch(() => {});
  return true;
}

function renderAccount() {
  const me = state.me;
  $('#nav').hidden = !me;
  $('#account').hidden = !me;
  $('#nav-admin').hidden = !(me && me.role === 'admin');
  const who = $('#who');
  who.replaceChildren();
  if (!me) return;
  append(who, [el('span', { class: 'who-name', text: me.username }),
    me.role === 'admin' ? el('span', { class: 'badge badge-admin', text: 'admin' }) : null,
    state.kind === 'key' ? el('span', { class: 'badge', text: 'API key' }) : null]);
}

async function refreshBalance() {
  const b = await api('GET', '/v1/balance');
  state.balance = b;
  setText($('#pill-balance'), fmtCredits(b.balance));
  setText($('#pill-held'), fmtCredits(b.held));
  $('#pill-held-wrap').hidden = !(b.held > 0);
  setText($('#bal-balance'), fmtCredits(b.balance));
  setText($('#bal-held'), fmtCredits(b.held));
  return b;
}

/* ------------------------------------------------------------------ */
/* routing                                                             */
/* ------------------------------------------------------------------ */

const VIEWS = ['jobs', 'models', 'credits', 'keys', 'admin'];
const enterView = {
  jobs: () => jobsList.load(),
  models: () => loadModels(),
  credits: () => { refreshBalance().catch(() => {}); renderTopUpState(); return ledger.load(); },
  keys: () => loadKeys(),
  admin: () => Promise.allSettled([users.load(), adminJobsList.load(), loadModels()]),
};

function route(focus = false) {
  let name = location.hash.replace(/^#\/?/, '') || 'jobs';
  if (!state.token || !state.me) name = 'auth';
  else if (!VIEWS.includes(name) || (name === 'admin' && state.me.role !== 'admin')) name = 'jobs';
  for (const section of $$('.view')) section.hidden = section.id !== `view-${name}`;
  for (const link of $$('#nav a')) {
    if (link.dataset.view === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const changed = state.view !== name;
  state.view = name;
  stopPolling();
  if (name === 'auth') { renderAccount(); return; }
  document.title = `${name === 'keys' ? 'API keys' : name[0].toUpperCase() + name.slice(1)} · voxd`;
  if (focus && changed) $(`#${name}-title`)?.focus();
  Promise.resolve(enterView[name]()).catch(() => {});
}

/* ------------------------------------------------------------------ */
/* sign-in forms                                                       */
/* ------------------------------------------------------------------ */

function setupAuthTabs() {
  const tabs = $$('.tabs [role=tab]');
  const select = (tab, focus) => {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute('aria-selected', String(on));
      t.tabIndex = on ? 0 : -1;
      $(`#${t.getAttribute('aria-controls')}`).hidden = !on;
    }
    if (focus) tab.focus();
  };
  tabs.forEach((tab, i) => {
    tab.addEventListener('click', () => select(tab, false));
    tab.addEventListener('keydown', (e) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
      if (step) { e.preventDefault(); select(tabs[(i + step + tabs.length) % tabs.length], true); }
      if (e.key === 'Home') { e.preventDefault(); select(tabs[0], true); }
      if (e.key === 'End') { e.preventDefault(); select(tabs[tabs.length - 1], true); }
    });
  });
}

async function logIn(username, password) {
  const tok = await api('POST', '/v1/auth/login', { json: { username, password }, auth: false });
  saveSession(tok.access_token, 'jwt', tok.expires_in);
}

async function afterSignIn() {
  hideBanner();
  try {
    await startSession();
  } catch (err) {
    if (state.token) signOut();
    hideBanner();
    throw err;
  }
  if (!location.hash) history.replaceState(null, '', '#jobs');
  route(true);
}

function setupAuthForms() {
  const login = $('#form-login');
  login.addEventListener('submit', (e) => {
    e.preventDefault();
    clearError(formError(login));
    const username = login.username.value.trim(), password = login.password.value;
    if (!username || !password) { showError(formError(login), new Error('Enter your username and password.')); return; }
    withBusy($('button[type=submit]', login), async () => {
      try {
        await logIn(username, password);
        login.reset();
        await afterSignIn();
      } catch (err) { showError(formError(login), err); }
    });
  });

  const signup = $('#form-signup');
  signup.addEventListener('submit', (e) => {
    e.preventDefault();
    clearError(formError(signup));
    const username = signup.username.value.trim(), password = signup.password.value, email = signup.email.value.trim();
    if (!username || !password) { showError(formError(signup), new Error('Choose a username and a password.')); return; }
    const body = { username, password };
    if (email) body.email = email;
    withBusy($('button[type=submit]', signup), async () => {
      try {
        await api('POST', '/v1/users', { json: body, auth: false });
        await logIn(username, password);
        signup.reset();
        await afterSignIn();
      } catch (err) { showError(formError(signup), err); }
    });
  });

  const keyForm = $('#form-apikey');
  keyForm.addEventListener('submit', (e) => {
    e.preventDefault();
    clearError(formError(keyForm));
    const key = keyForm.key.value.trim();
    if (!key) { showError(formError(keyForm), new Error('Paste an API key (it starts with vx_).')); return; }
    withBusy($('button[type=submit]', keyForm), async () => {
      saveSession(key, 'key');
      try {
        await afterSignIn();
        keyForm.reset();
      } catch (err) { showError(formError(keyForm), err); }
    });
  });

  $('#logout').addEventListener('click', () => signOut());
  $('#banner-close').addEventListener('click', hideBanner);
}

/* ------------------------------------------------------------------ */
/* models                                                              */
/* ------------------------------------------------------------------ */

async function loadModels() {
  const errBox = $('#models-error');
  try {
    const res = await api('GET', '/v1/models');
    state.models = Array.isArray(res.data) ? res.data : [];
    clearError(errBox);
  } catch (err) {
    showError(errBox, err);
    throw err;
  }
  renderModels();
  renderModelSelects();
  renderPrices();
}

function paramRange(p) {
  if (p.type === 'enum' && Array.isArray(p.choices)) return p.choices.join(', ');
  if (p.type === 'boolean') return 'true, false';
  const lo = typeof p.min === 'number' ? p.min : null, hi = typeof p.max === 'number' ? p.max : null;
  if (lo !== null && hi !== null) return `${lo} – ${hi}`;
  if (lo !== null) return `≥ ${lo}`;
  if (hi !== null) return `≤ ${hi}`;
  return 'any';
}

function renderModels() {
  const list = $('#models-list');
  list.replaceChildren();
  for (const m of state.models) {
    const params = Array.isArray(m.params) ? m.params : [];
    const table = params.length ? el('div', { class: 'table-wrap' }, el('table', { class: 'table table-compact' },
      el('caption', { class: 'visually-hidden', text: `Parameters of ${m.name}` }),
      el('thead', {}, el('tr', {}, ['Parameter', 'Type', 'Default', 'Allowed', 'Description'].map((h) => el('th', { scope: 'col', text: h })))),
      el('tbody', {}, params.map((p) => el('tr', {},
        el('td', {}, el('code', { text: p.name })), el('td', { text: p.type }),
        el('td', {}, el('code', { text: JSON.stringify(p.default) })), el('td', { text: paramRange(p) }),
        el('td', { text: p.description || '' })))))) : el('p', { class: 'muted', text: 'No parameters.' });
    const price = m.price || {};
    list.append(el('article', { class: 'card model-card', 'aria-labelledby': `model-${m.name}` },
      el('div', { class: 'card-head' },
        el('h3', { id: `model-${m.name}` }, el('code', { text: m.name })),
        el('span', { class: 'badge', text: m.kind || 'model' })),
      el('p', { text: m.description || '' }),
      el('dl', { class: 'kv' },
        el('div', {}, el('dt', { text: 'Price' }), el('dd', { text: `${fmtCredits(price.per_job)} per job + ${fmtCredits(price.per_second)} per second` })),
        el('div', {}, el('dt', { text: 'Inputs' }), el('dd', { text: Array.isArray(m.inputs) ? m.inputs.join(', ') : '–' }))),
      table,
      el('div', { class: 'actions' }, el('button', {
        type: 'button', class: 'btn', text: `Use ${m.name}`,
        onclick: () => { $('#job-model').value = m.name; renderParamsForm(); location.hash = '#jobs'; $('#job-file').focus(); },
      }))));
  }
  if (!state.models.length) list.append(el('p', { class: 'empty', text: 'No models are available.' }));
}

function renderModelSelects() {
  const select = $('#job-model');
  const keep = select.value;
  select.replaceChildren(...state.models.map((m) => el('option', { value: m.name, text: `${m.name} — ${m.kind || ''}` })));
  if (state.models.some((m) => m.name === keep)) select.value = keep;
  renderParamsForm();
  for (const id of ['#jobs-model', '#admin-jobs-model']) {
    const f = $(id), v = f.value;
    f.replaceChildren(el('option', { value: '', text: 'All models' }), ...state.models.map((m) => el('option', { value: m.name, text: m.name })));
    f.value = v;
  }
}

/* ------------------------------------------------------------------ */
/* job submission                                                      */
/* ------------------------------------------------------------------ */

const jobForm = { idempotencyKey: null, duration: null, durationFor: null };

function currentModel() { return state.models.find((m) => m.name === $('#job-model').value) || null; }

function renderParamsForm() {
  const m = currentModel();
  const fieldset = $('#job-params'), box = $('#job-params-fields');
  box.replaceChildren();
  setText($('#job-model-desc'), m ? m.description : '');
  const params = m && Array.isArray(m.params) ? m.params : [];
  fieldset.hidden = params.length === 0;
  for (const p of params) {
    const id = `param-${p.name}`, hintId = `${id}-hint`;
    const hint = [p.description, p.type === 'enum' || p.type === 'boolean' ? null : `Allowed: ${paramRange(p)}.`,
      `Default: ${JSON.stringify(p.default)}.`].filter(Boolean).join(' ');
    let input;
    if (p.type === 'boolean') {
      input = el('input', { id, type: 'checkbox', checked: p.default === true, 'aria-describedby': hintId });
      box.append(el('div', { class: 'field field-check' }, input, el('label', { for: id, text: p.name }),
        el('p', { id: hintId, class: 'hint', text: hint })));
    } else {
      if (p.type === 'enum') {
        input = el('select', { id, 'aria-describedby': hintId },
          (p.choices || []).map((c) => el('option', { value: c, text: c })));
        if (typeof p.default === 'string') input.value = p.default;
      } else {
        input = el('input', {
          id, type: 'number', inputmode: p.type === 'integer' ? 'numeric' : 'decimal',
          step: p.type === 'integer' ? '1' : 'any', 'aria-describedby': hintId,
          value: p.default === undefined || p.default === null ? '' : String(p.default),
        });
        if (typeof p.min === 'number') input.min = String(p.min);
        if (typeof p.max === 'number') input.max = String(p.max);
      }
      box.append(el('div', { class: 'field' }, el('label', { for: id, text: p.name }), input,
        el('p', { id: hintId, class: 'hint', text: hint })));
    }
    input.dataset.param = p.name;
  }
  updateEstimate();
}

// Reads the params form; throws Error with a clear message on a bad value.
function collectParams(m) {
  const out = {};
  for (const p of m.params || []) {
    const input = $(`#param-${CSS.escape(p.name)}`);
    if (!input) continue;
    input.removeAttribute('aria-invalid');
    if (p.type === 'boolean') { out[p.name] = input.checked; continue; }
    if (p.type === 'enum') { out[p.name] = input.value; continue; }
    const raw = input.value.trim();
    if (raw === '') continue; // the server fills the default
    const n = Number(raw);
    const bad = (msg) => { input.setAttribute('aria-invalid', 'true'); input.focus(); throw new Error(msg); };
    if (!Number.isFinite(n)) bad(`${p.name} must be a number.`);
    if (p.type === 'integer' && !Number.isInteger(n)) bad(`${p.name} must be a whole number.`);
    if ((typeof p.min === 'number' && n < p.min) || (typeof p.max === 'number' && n > p.max)) bad(`${p.name} must be within ${paramRange(p)}.`);
    out[p.name] = n;
  }
  return out;
}

// Duration as the browser sees it, for the price estimate only; the server
// probes the file itself and fixes the real price.
function probeDuration(file) {
  return new Promise((resolve) => {
    const url = URL.createObjectURL(file);
    const audio = new Audio();
    const done = (v) => { URL.revokeObjectURL(url); audio.removeAttribute('src'); resolve(v); };
    const timer = setTimeout(() => done(null), 5000);
    audio.preload = 'metadata';
    audio.onloadedmetadata = () => { clearTimeout(timer); done(Number.isFinite(audio.duration) ? audio.duration : null); };
    audio.onerror = () => { clearTimeout(timer); done(null); };
    audio.src = url;
  });
}

function updateEstimate() {
  const out = $('#job-estimate');
  const m = currentModel();
  const file = $('#job-file').files[0];
  if (!m || !m.price) { setText(out, ''); return; }
  const p = m.price;
  if (file && jobForm.durationFor === file && typeof jobForm.duration === 'number') {
    const micro = Math.round(p.per_job * 1e6) + Math.ceil(Math.round(p.per_second * 1e6) * jobForm.duration - 1e-9);
    const est = micro / 1e6;
    let text = `Estimated cost: ≈ ${fmtCredits(est)} credits for ${fmtDuration(jobForm.duration)} of audio.`;
    if (state.balance && est > state.balance.balance) text += ` That is more than your available ${fmtCredits(state.balance.balance)} credits.`;
    setText(out, text);
  } else {
    setText(out, `Cost: ${fmtCredits(p.per_job)} per job + ${fmtCredits(p.per_second)} per second of audio.`);
  }
}

function uploadJob(formData, idempotencyKey, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/v1/jobs');
    if (state.token) xhr.setRequestHeader('Authorization', `Bearer ${state.token}`);
    xhr.setRequestHeader('Idempotency-Key', idempotencyKey);
    xhr.upload.addEventListener('progress', (e) => { if (e.lengthComputable) onProgress(e.loaded, e.total); });
    xhr.addEventListener('load', () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch { data = null; }
      if (xhr.status >= 200 && xhr.status < 300 && data) resolve(data);
      else {
        const err = errorFrom(xhr.status, data, xhr.getResponseHeader('X-Request-Id'));
        checkAuthLost(err);
        reject(err);
      }
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, 'upload_interrupted',
      'The upload was interrupted. The connection dropped, or the file is larger than this server accepts.')));
    xhr.addEventListener('abort', () => reject(new ApiError(0, 'upload_aborted', 'The upload was aborted.')));
    xhr.send(formData);
  });
}

function setupJobForm() {
  const form = $('#form-job');
  const resetKey = () => { jobForm.idempotencyKey = null; };
  form.addEventListener('input', resetKey);
  form.addEventListener('change', resetKey);
  $('#job-model').addEventListener('change', renderParamsForm);
  $('#job-file').addEventListener('change', async () => {
    const file = $('#job-file').files[0];
    jobForm.duration = null;
    jobForm.durationFor = file || null;
    updateEstimate();
    if (!file) return;
    const d = await probeDuration(file);
    if (jobForm.durationFor === file) { jobForm.duration = d; updateEstimate(); }
  });

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const errBox = formError(form);
    clearError(errBox);
    const m = currentModel();
    const file = $('#job-file').files[0];
    if (!m) { showError(errBox, new Error('Choose a model.')); $('#job-model').focus(); return; }
    if (!file) { showError(errBox, new Error('Choose an audio file.')); $('#job-file').focus(); return; }
    let params;
    try { params = collectParams(m); } catch (err) { showError(errBox, err); return; }
    const webhook = $('#job-webhook').value.trim();
    // Text fields first so the server can validate them before the file streams.
    const fd = new FormData();
    fd.append('model', m.name);
    fd.append('params', JSON.stringify(params));
    if (webhook) fd.append('webhook_url', webhook);
    fd.append('file', file, file.name);
    // Kept across retries of the same form so a lost answer is replayed, not re-run.
    if (!jobForm.idempotencyKey) jobForm.idempotencyKey = newIdempotencyKey();
    const wrap = $('#upload-wrap'), bar = $('#upload-progress'), text = $('#upload-text');
    bar.value = 0;
    setText(text, '');
    wrap.hidden = false;
    withBusy($('#job-submit'), async () => {
      try {
        const job = await uploadJob(fd, jobForm.idempotencyKey, (loaded, total) => {
          bar.value = total ? loaded / total : 0;
          setText(text, `${fmtBytes(loaded)} of ${fmtBytes(total)}`);
        });
        jobForm.idempotencyKey = null;
        $('#job-file').value = '';
        jobForm.duration = null;
        jobForm.durationFor = null;
        updateEstimate();
        setText($('#jobs-live'), `Job ${job.id} accepted.`);
        jobsList.upsert(job);
        refreshBalance().catch(() => {});
        schedulePoll();
      } catch (err) {
        showError(errBox, err);
      } finally {
        wrap.hidden = true;
      }
    });
  });
}

/* ------------------------------------------------------------------ */
/* job lists (yours and admin's), downloads, cancel                    */
/* ------------------------------------------------------------------ */

const ACTIVE = new Set(['queued', 'running']);

function filenameFrom(disposition) {
  if (!disposition) return null;
  let m = /filename\*\s*=\s*(?:UTF-8|utf-8)''([^;]+)/.exec(disposition);
  let name = null;
  if (m) { try { name = decodeURIComponent(m[1].trim()); } catch { name = null; } }
  if (!name && (m = /filename\s*=\s*"((?:[^"\\]|\\.)*)"/.exec(disposition))) name = m[1].replace(/\\(.)/g, '$1');
  if (!name && (m = /filename\s*=\s*([^;]+)/.exec(disposition))) name = m[1].trim();
  return name ? name.replace(/[/\\]/g, '_') : null;
}

// Downloads need the Authorization header, so fetch, then hand the browser a blob URL.
async function download(path, fallbackName) {
  let res;
  try { res = await fetch(path, { headers: authHeaders(), cache: 'no-store' }); } catch { throw NETWORK_ERROR(); }
  if (!res.ok) {
    let data = null;
    try { data = await res.json(); } catch { data = null; }
    const err = errorFrom(res.status, data, res.headers.get('X-Request-Id'));
    checkAuthLost(err);
    throw err;
  }
  const blob = await res.blob();
  const name = filenameFrom(res.headers.get('Content-Disposition')) || fallbackName;
  const url = URL.createObjectURL(blob);
  const a = el('a', { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

const EXT = { 'audio/wav': 'wav', 'audio/x-wav': 'wav', 'audio/flac': 'flac', 'audio/ogg': 'ogg', 'audio/opus': 'opus', 'audio/mpeg': 'mp3', 'application/json': 'json' };

function resultName(job) {
  const out = job.result && job.result.output;
  if (!out) return `${job.id}.json`;
  const ext = EXT[(out.content_type || '').split(';')[0].trim()] || (job.params && job.params.format) || 'bin';
  const base = job.input && job.input.filename ? job.input.filename.replace(/\.[^.]*$/, '') : job.id;
  return `${base}.${ext}`;
}

function statusLabel(job) {
  if (job.status === 'running' && job.cancel_requested) return 'canceling';
  if (job.status === 'queued' && job.cancel_requested) return 'canceling';
  return job.status;
}

// One job card. Built once per job id and updated in place while polling,
// so keyboard focus and open <details> survive refreshes.
function createJobCard(list) {
  const r = {};
  r.status = el('span', { class: 'status' });
  r.title = el('span', { class: 'job-title' });
  r.id = el('code', { class: 'job-id' });
  r.created = el('span', { class: 'muted small' });
  r.meta = el('p', { class: 'job-meta muted' });
  r.progress = el('progress', { max: 1, value: 0 });
  r.progressText = el('span', { class: 'progress-text' });
  r.cost = el('p', { class: 'job-cost' });
  r.error = el('p', { class: 'job-error', role: 'note', hidden: true });
  r.actionError = el('p', { class: 'form-error', role: 'alert', hidden: true });
  r.cancel = el('button', { type: 'button', class: 'btn btn-small btn-danger-quiet', text: 'Cancel' });
  r.result = el('button', { type: 'button', class: 'btn btn-small', text: 'Download result' });
  r.input = el('button', { type: 'button', class: 'btn btn-small btn-quiet', text: 'Download input' });
  r.detailsBody = el('div', { class: 'details-body' });
  r.details = el('details', { class: 'job-details' }, el('summary', { text: 'Details' }), r.detailsBody);
  r.li = el('li', { class: 'job' },
    el('div', { class: 'job-head' }, r.status, r.title, r.id, el('span', { class: 'spacer' }), r.created),
    r.meta,
    el('div', { class: 'job-progress' }, r.progress, r.progressText),
    r.cost, r.error,
    el('div', { class: 'actions' }, r.cancel, r.result, r.input, r.details),
    r.actionError);

  const act = (button, fn) => button.addEventListener('click', () => {
    clearError(r.actionError);
    withBusy(button, async () => { try { await fn(r.job); } catch (err) { showError(r.actionError, err); } });
  });
  act(r.cancel, async (job) => {
    try {
      const updated = await api('POST', `/v1/jobs/${encodeURIComponent(job.id)}/cancel`);
      list.upsert(updated);
      refreshBalance().catch(() => {});
    } catch (err) {
      if (err.code === 'job_finished') list.refresh().catch(() => {});
      throw err;
    }
  });
  act(r.result, (job) => download(`/v1/jobs/${encodeURIComponent(job.id)}/result`, resultName(job)));
  act(r.input, (job) => download(`/v1/jobs/${encodeURIComponent(job.id)}/input`, (job.input && job.input.filename) || `${job.id}.input`));
  return r;
}

function kvRow(term, value) { return el('div', {}, el('dt', { text: term }), el('dd', {}, value)); }

function updateJobCard(r, job, { admin, mine }) {
  r.job = job;
  const label = statusLabel(job);
  r.li.dataset.status = job.status;
  r.status.className = `status status-${job.status}`;
  setText(r.status, label);
  setText(r.title, job.model);
  setText(r.id, job.id);
  r.created.replaceChildren(timeEl(job.created_at));
  const input = job.input || {};
  const meta = [input.filename || 'input', fmtDuration(input.duration_s), fmtBytes(input.bytes)];
  if (admin && job.user_id) meta.push(`user ${job.user_id}`);
  setText(r.meta, meta.join(' · '));

  const p = typeof job.progress === 'number' ? Math.min(1, Math.max(0, job.progress)) : 0;
  const shown = job.status === 'succeeded' ? 1 : p;
  r.progress.value = shown;
  r.progress.setAttribute('aria-label', `Progress of job ${job.id}`);
  setText(r.progressText, percentFormat.format(shown));
  r.progress.parentElement.hidden = !(ACTIVE.has(job.status) || job.status === 'succeeded');

  const cost = job.cost || {};
  setText(r.cost, job.status === 'succeeded' ? `Charged ${fmtCredits(cost.charged)} credits`
    : ACTIVE.has(job.status) ? `Holding ${fmtCredits(cost.held)} credits`
      : `Held ${fmtCredits(cost.held)} · charged ${fmtCredits(cost.charged)} credits`);

  r.error.hidden = !job.error;
  if (job.error) setText(r.error, `${job.error.message || 'Failed'} (${job.error.code || 'error'})`);

  r.cancel.hidden = !(mine && ACTIVE.has(job.status) && !job.cancel_requested);
  r.result.hidden = job.status !== 'succeeded';
  setText(r.result, job.result && job.result.output ? 'Download result' : 'Download result (JSON)');
  r.result.setAttribute('aria-label', `Download result of job ${job.id}`);
  r.input.setAttribute('aria-label', `Download input of job ${job.id}`);
  r.cancel.setAttribute('aria-label', `Cancel job ${job.id}`);

  const price = job.price || {};
  const dl = el('dl', { class: 'kv' },
    kvRow('Attempts', `${job.attempts ?? 0} of ${job.max_attempts ?? '–'}`),
    kvRow('Started', timeEl(job.started_at)),
    kvRow('Finished', timeEl(job.finished_at)),
    kvRow('Price', `${fmtCredits(price.per_job)} per job + ${fmtCredits(price.per_second)} per second`),
    kvRow('Input type', input.content_type || input.format || '–'),
    job.webhook_url ? kvRow('Webhook', job.webhook_url) : null);
  const blocks = [dl, el('h4', { text: 'Parameters' }), el('pre', { text: pretty(job.params ?? {}) })];
  if (job.result) blocks.push(el('h4', { text: 'Result' }), el('pre', { text: pretty(job.result) }));
  if (Array.isArray(job.errors) && job.errors.length) {
    blocks.push(el('h4', { text: 'Attempt errors' }), el('ol', { class: 'attempts' },
      job.errors.map((e) => el('li', {}, el('span', { text: `#${e.attempt} ` }), timeEl(e.at), ` ${e.message} (${e.code})`))));
  }
  r.detailsBody.replaceChildren(...blocks);
}

function makeJobList({ prefix, basePath, filters, admin }) {
  const listEl = $(`#${prefix}-list`), emptyEl = $(`#${prefix}-empty`), moreEl = $(`#${prefix}-more`), errEl = $(`#${prefix}-error`);
  const announce = $(`#${prefix}-live`);
  const cards = new Map();
  const self = { items: [], cursor: null, loaded: false };
  let generation = 0;

  const url = (extra) => `${basePath}${query({ ...filters(), ...extra })}`;
  function render() {
    const ids = new Set(self.items.map((j) => j.id));
    for (const [id, r] of cards) if (!ids.has(id)) { r.li.remove(); cards.delete(id); }
    self.items.forEach((job, i) => {
      let r = cards.get(job.id);
      if (!r) { r = createJobCard(self); cards.set(job.id, r); }
      // Tell screen-reader users when a job they watched finishes.
      if (announce && r.job && ACTIVE.has(r.job.status) && !ACTIVE.has(job.status)) {
        setText(announce, `Job ${job.id} (${job.model}) ${job.status}.`);
      }
      updateJobCard(r, job, { admin, mine: !admin || (state.me && job.user_id === state.me.id) });
      if (listEl.children[i] !== r.li) listEl.insertBefore(r.li, listEl.children[i] || null);
    });
    emptyEl.hidden = !self.loaded || self.items.length > 0;
    moreEl.hidden = !self.cursor;
  }
  self.reset = () => { generation++; self.items = []; self.cursor = null; self.loaded = false; cards.clear(); listEl.replaceChildren(); render(); };
  self.load = async () => {
    const gen = ++generation;
    try {
      const page = await api('GET', url({ limit: 50 }));
      if (gen !== generation) return;
      self.items = page.data || [];
      self.cursor = page.next_cursor || null;
      self.loaded = true;
      clearError(errEl);
      render();
      schedulePoll();
    } catch (err) { if (gen === generation) showError(errEl, err); throw err; }
  };
  // Re-reads the pages already shown (up to 200 jobs) without losing later pages.
  self.refresh = async () => {
    if (!self.loaded) return self.load();
    const gen = generation;
    const n = Math.min(200, Math.max(50, self.items.length));
    const page = await api('GET', url({ limit: n }));
    if (gen !== generation) return;
    const fresh = page.data || [];
    const freshIds = new Set(fresh.map((j) => j.id));
    const tail = self.items.length > n ? self.items.slice(n).filter((j) => !freshIds.has(j.id)) : [];
    self.items = fresh.concat(tail);
    if (self.items.length <= 200 && !tail.length) self.cursor = page.next_cursor || null;
    clearError(errEl);
    render();
  };
  self.more = async () => {
    if (!self.cursor) return;
    const gen = generation;
    try {
      const page = await api('GET', url({ limit: 50, cursor: self.cursor }));
      if (gen !== generation) return;
      const have = new Set(self.items.map((j) => j.id));
      self.items = self.items.concat((page.data || []).filter((j) => !have.has(j.id)));
      self.cursor = page.next_cursor || null;
      clearError(errEl);
      render();
    } catch (err) { showError(errEl, err); }
  };
  self.upsert = (job) => {
    const i = self.items.findIndex((j) => j.id === job.id);
    if (i >= 0) self.items[i] = { ...self.items[i], ...job };
    else self.items.unshift(job);
    self.loaded = true;
    render();
  };
  self.hasActive = () => self.items.some((j) => ACTIVE.has(j.status));
  moreEl.addEventListener('click', () => withBusy(moreEl, self.more));
  return self;
}

const jobsList = makeJobList({
  prefix: 'jobs', basePath: '/v1/jobs', admin: false,
  filters: () => ({ status: $('#jobs-status').value, model: $('#jobs-model').value }),
});
const adminJobsList = makeJobList({
  prefix: 'admin-jobs', basePath: '/v1/admin/jobs', admin: true,
  filters: () => ({ user_id: $('#admin-jobs-user').value.trim(), status: $('#admin-jobs-status').value, model: $('#admin-jobs-model').value }),
});

function setupJobLists() {
  for (const id of ['#jobs-status', '#jobs-model']) $(id).addEventListener('change', () => jobsList.load().catch(() => {}));
  $('#jobs-filter').addEventListener('submit', (e) => { e.preventDefault(); jobsList.load().catch(() => {}); });
  $('#jobs-refresh').addEventListener('click', (e) => withBusy(e.currentTarget, () => jobsList.load().catch(() => {})));
  $('#admin-jobs-filter').addEventListener('submit', (e) => { e.preventDefault(); adminJobsList.load().catch(() => {}); });
  for (const id of ['#admin-jobs-status', '#admin-jobs-model']) $(id).addEventListener('change', () => adminJobsList.load().catch(() => {}));
}

/* ------------------------------------------------------------------ */
/* polling                                                             */
/* ------------------------------------------------------------------ */

const POLL_MS = 1500;
let pollTimer = null;

function stopPolling() { clearTimeout(pollTimer); pollTimer = null; }

function activeList() {
  if (state.view === 'jobs') return jobsList;
  if (state.view === 'admin') return adminJobsList;
  return null;
}

// Polls only while the visible list has queued/running jobs; one request at a time.
function schedulePoll() {
  stopPolling();
  const list = activeList();
  const polling = Boolean(state.token && list && list.hasActive());
  $('#jobs-polling').hidden = !(polling && list === jobsList);
  if (!polling) return;
  pollTimer = setTimeout(pollOnce, POLL_MS);
}

async function pollOnce() {
  pollTimer = null;
  const list = activeList();
  if (!list) return;
  if (document.hidden) { pollTimer = setTimeout(pollOnce, POLL_MS); return; }
  const hadActive = list.hasActive();
  try {
    await list.refresh();
    if (hadActive) await refreshBalance();
  } catch (err) {
    showError($(state.view === 'jobs' ? '#jobs-error' : '#admin-jobs-error'), err);
  }
  if (state.token && !pollTimer) schedulePoll();
}

document.addEventListener('visibilitychange', () => { if (!document.hidden && state.token && !pollTimer) schedulePoll(); });

/* ------------------------------------------------------------------ */
/* credits: top-up and ledger                                          */
/* ------------------------------------------------------------------ */

function renderTopUpState() {
  const off = sessionStorage.getItem(STORE_TOPUP_OFF) === '1';
  $('#form-topup').hidden = off;
  $('#topup-disabled').hidden = !off;
}

function setupTopUp() {
  const form = $('#form-topup');
  let key = null;
  form.addEventListener('input', () => { key = null; });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const errBox = formError(form);
    clearError(errBox);
    const amount = Number(form.amount.value);
    if (!form.amount.value.trim() || !Number.isFinite(amount) || amount <= 0) {
      showError(errBox, new Error('Enter a positive amount of credits.'));
      form.amount.focus();
      return;
    }
    if (!key) key = newIdempotencyKey();
    withBusy($('button[type=submit]', form), async () => {
      try {
        await api('POST', '/v1/balance/top-up', { json: { amount }, idempotencyKey: key });
        key = null;
        form.reset();
        await refreshBalance();
        await ledger.load();
      } catch (err) {
        if (err.code === 'top_up_disabled') {
          sessionStorage.setItem(STORE_TOPUP_OFF, '1');
          renderTopUpState();
          $('#topup-disabled').focus();
        } else showError(errBox, err);
      }
    });
  });
}

function makePager({ path, tbody, emptyEl, moreEl, errEl, row }) {
  const self = { cursor: null };
  let generation = 0;
  self.load = async (more = false) => {
    const gen = more ? generation : ++generation;
    try {
      const page = await api('GET', `${path}${query({ limit: 50, cursor: more ? self.cursor : null })}`);
      if (gen !== generation) return;
      const rows = (page.data || []).map(row);
      if (more) tbody.append(...rows); else tbody.replaceChildren(...rows);
      self.cursor = page.next_cursor || null;
      moreEl.hidden = !self.cursor;
      emptyEl.hidden = tbody.children.length > 0;
      clearError(errEl);
    } catch (err) { showError(errEl, err); }
  };
  moreEl.addEventListener('click', () => withBusy(moreEl, () => self.load(true)));
  return self;
}

const KIND_LABEL = { top_up: 'top-up' };

const ledger = makePager({
  path: '/v1/ledger', tbody: $('#ledger-table tbody'), emptyEl: $('#ledger-empty'), moreEl: $('#ledger-more'), errEl: $('#ledger-error'),
  row: (e) => el('tr', {},
    el('td', {}, timeEl(e.created_at)),
    el('td', {}, el('span', { class: `kind kind-${e.kind}`, text: KIND_LABEL[e.kind] || e.kind })),
    el('td', { class: `num ${e.amount > 0 ? 'pos' : e.amount < 0 ? 'neg' : ''}`, text: fmtSigned(e.amount) }),
    el('td', { class: 'num muted', text: fmtSigned(e.held_delta) }),
    el('td', { class: 'num', text: fmtCredits(e.balance_after) }),
    el('td', {}, e.job_id ? el('code', { text: e.job_id }) : '–'),
    el('td', { text: [e.note, typeof e.charged === 'number' ? `charged ${fmtCredits(e.charged)}` : null].filter(Boolean).join(' · ') || '–' })),
});

/* ------------------------------------------------------------------ */
/* API keys                                                            */
/* ------------------------------------------------------------------ */

async function loadKeys() {
  const errBox = $('#keys-error'), tbody = $('#keys-table tbody');
  try {
    const res = await api('GET', '/v1/api-keys');
    const keys = res.data || [];
    tbody.replaceChildren(...keys.map((k) => {
      const revoke = k.revoked_at ? null : el('button', {
        type: 'button', class: 'btn btn-small btn-danger-quiet', text: 'Revoke',
        'aria-label': `Revoke key ${k.name || k.prefix}`,
        onclick: (e) => revokeKey(k, e.currentTarget),
      });
      return el('tr', { class: k.revoked_at ? 'revoked' : '' },
        el('td', { text: k.name || '(unnamed)' }),
        el('td', {}, el('code', { text: `${k.prefix}…` })),
        el('td', {}, timeEl(k.created_at)),
        el('td', {}, timeEl(k.last_used_at)),
        el('td', {}, k.revoked_at ? el('span', { class: 'status status-canceled', text: 'revoked' }) : el('span', { class: 'status status-succeeded', text: 'active' })),
        el('td', { class: 'cell-actions' }, revoke));
    }));
    $('#keys-empty').hidden = keys.length > 0;
    clearError(errBox);
  } catch (err) { showError(errBox, err); }
}

function revokeKey(k, button) {
  const inUse = state.kind === 'key' && state.token && k.prefix && state.token.startsWith(k.prefix);
  const msg = inUse ? `Revoke "${k.name || k.prefix}"? This page is signed in with that key and will be signed out.`
    : `Revoke "${k.name || k.prefix}"? Programs using it stop working at once.`;
  if (!window.confirm(msg)) return;
  withBusy(button, async () => {
    try {
      await api('DELETE', `/v1/api-keys/${encodeURIComponent(k.id)}`);
      if (inUse) { signOut('The API key this page used was revoked.'); return; }
      await loadKeys();
    } catch (err) { showError($('#keys-error'), err); }
  });
}

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  // Fallback for plain-http origins where the async clipboard is unavailable.
  const input = $('#new-key-value');
  input.focus();
  input.select();
  if (!document.execCommand('copy')) throw new Error('Copy failed; select the key and copy it by hand.');
}

function setupKeys() {
  const form = $('#form-key');
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const errBox = formError(form);
    clearError(errBox);
    const name = form.name.value.trim();
    withBusy($('button[type=submit]', form), async () => {
      try {
        const k = await api('POST', '/v1/api-keys', { json: name ? { name } : {} });
        form.reset();
        $('#new-key-value').value = k.key;
        setText($('#new-key-status'), '');
        $('#new-key').hidden = false;
        $('#new-key-copy').focus();
        await loadKeys();
      } catch (err) { showError(errBox, err); }
    });
  });
  $('#new-key-copy').addEventListener('click', async () => {
    try {
      await copyText($('#new-key-value').value);
      setText($('#new-key-status'), 'Copied to the clipboard.');
    } catch (err) { setText($('#new-key-status'), err.message); }
  });
  $('#new-key-done').addEventListener('click', () => {
    $('#new-key-value').value = '';
    $('#new-key').hidden = true;
    $('#key-name').focus();
  });
}

/* ------------------------------------------------------------------ */
/* admin                                                               */
/* ------------------------------------------------------------------ */

const creditsForm = { user: null, key: null };

const users = makePager({
  path: '/v1/admin/users', tbody: $('#users-table tbody'), emptyEl: el('p'), moreEl: $('#users-more'), errEl: $('#users-error'),
  row: (u) => el('tr', {},
    el('th', { scope: 'row' }, el('span', { text: u.username }), el('br'), el('code', { class: 'muted small', text: u.id })),
    el('td', { text: u.email || '–' }),
    el('td', {}, u.role === 'admin' ? el('span', { class: 'badge badge-admin', text: 'admin' }) : 'user'),
    el('td', { class: 'num', text: fmtCredits(u.balance) }),
    el('td', { class: 'num', text: fmtCredits(u.held) }),
    el('td', {}, timeEl(u.created_at)),
    el('td', { class: 'cell-actions' },
      el('button', { type: 'button', class: 'btn btn-small', text: 'Credits…', 'aria-label': `Adjust credits of ${u.username}`, onclick: () => openCreditsForm(u) }),
      el('button', { type: 'button', class: 'btn btn-small btn-quiet', text: 'Audit', 'aria-label': `Audit ledger of ${u.username}`, onclick: (e) => auditUser(u, e.currentTarget) }),
      el('button', { type: 'button', class: 'btn btn-small btn-quiet', text: 'Jobs', 'aria-label': `Show jobs of ${u.username}`, onclick: () => { $('#admin-jobs-user').value = u.id; adminJobsList.load().catch(() => {}); $('#admin-jobs-user').focus(); } }))),
});

function openCreditsForm(u) {
  const form = $('#form-credits');
  creditsForm.user = u;
  creditsForm.key = null;
  form.reset();
  clearError(formError(form));
  $('.form-ok', form).hidden = true;
  setText($('#credits-user'), u.username);
  form.hidden = false;
  form.amount.focus();
}

async function auditUser(u, button) {
  const out = $('#audit-result');
  await withBusy(button, async () => {
    try {
      const a = await api('GET', `/v1/admin/users/${encodeURIComponent(u.id)}/audit`);
      const vs = (v) => (typeof v === 'number' ? ` (ledger ${fmtCredits(v)})` : '');
      setText(out, `${u.username}: balance ${fmtCredits(a.balance)}${vs(a.ledger_sum)}, held ${fmtCredits(a.held)}${vs(a.held_sum)} — ${a.consistent ? 'consistent with the ledger' : 'INCONSISTENT with the ledger'}.`);
      out.classList.toggle('note-bad', !a.consistent);
      out.hidden = false;
    } catch (err) { showError($('#users-error'), err); }
  });
}

function setupAdmin() {
  const form = $('#form-credits');
  form.addEventListener('input', () => { creditsForm.key = null; });
  $('#credits-cancel').addEventListener('click', () => { form.hidden = true; });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const errBox = formError(form), ok = $('.form-ok', form);
    clearError(errBox);
    ok.hidden = true;
    const amount = Number(form.amount.value), reason = form.reason.value.trim();
    if (!form.amount.value.trim() || !Number.isFinite(amount) || amount === 0) { showError(errBox, new Error('Enter a non-zero amount.')); form.amount.focus(); return; }
    if (!reason) { showError(errBox, new Error('A reason is required.')); form.reason.focus(); return; }
    const u = creditsForm.user;
    if (!creditsForm.key) creditsForm.key = newIdempotencyKey();
    withBusy($('button[type=submit]', form), async () => {
      try {
        const b = await api('POST', `/v1/admin/users/${encodeURIComponent(u.id)}/credits`, { json: { amount, reason }, idempotencyKey: creditsForm.key });
        creditsForm.key = null;
        form.amount.value = '';
        form.reason.value = '';
        setText(ok, `${u.username} now has ${fmtCredits(b.balance)} credits (${fmtCredits(b.held)} held).`);
        ok.hidden = false;
        await users.load();
        if (state.me && u.id === state.me.id) refreshBalance().catch(() => {});
      } catch (err) { showError(errBox, err); }
    });
  });
  $('#users-refresh').addEventListener('click', (e) => withBusy(e.currentTarget, () => users.load()));
}

function renderPrices() {
  const tbody = $('#prices-table tbody');
  tbody.replaceChildren(...state.models.map((m) => {
    const price = m.price || {};
    const jobId = `price-job-${m.name}`, secId = `price-sec-${m.name}`;
    const perJob = el('input', { id: jobId, type: 'number', min: '0', step: 'any', inputmode: 'decimal', value: String(price.per_job ?? 0) });
    const perSec = el('input', { id: secId, type: 'number', min: '0', step: 'any', inputmode: 'decimal', value: String(price.per_second ?? 0) });
    const status = el('span', { class: 'muted small', role: 'status' });
    const errBox = $('#prices-error');
    const save = el('button', {
      type: 'button', class: 'btn btn-small', text: 'Save', 'aria-label': `Save price of ${m.name}`,
      onclick: () => withBusy(save, async () => {
        clearError(errBox);
        setText(status, '');
        const body = { per_job: Number(perJob.value), per_second: Number(perSec.value) };
        if (!perJob.value.trim() || !perSec.value.trim() || !(body.per_job >= 0) || !(body.per_second >= 0)) {
          showError(errBox, new Error(`Prices of ${m.name} must be numbers ≥ 0.`));
          return;
        }
        try {
          const updated = await api('PUT', `/v1/admin/models/${encodeURIComponent(m.name)}/price`, { json: body });
          const i = state.models.findIndex((x) => x.name === m.name);
          if (i >= 0 && updated && updated.name) state.models[i] = updated;
          renderModels();
          updateEstimate();
          setText(status, 'Saved.');
        } catch (err) { showError(errBox, err); }
      }),
    });
    return el('tr', {},
      el('th', { scope: 'row' }, el('code', { text: m.name })),
      el('td', {}, el('label', { for: jobId, class: 'visually-hidden', text: `${m.name} price per job` }), perJob),
      el('td', {}, el('label', { for: secId, class: 'visually-hidden', text: `${m.name} price per second` }), perSec),
      el('td', { class: 'cell-actions' }, save, ' ', status));
  }));
}

/* ------------------------------------------------------------------ */
/* start                                                               */
/* ------------------------------------------------------------------ */

async function main() {
  setupAuthTabs();
  setupAuthForms();
  setupJobForm();
  setupJobLists();
  setupTopUp();
  setupKeys();
  setupAdmin();
  $('#ledger-refresh').addEventListener('click', (e) => withBusy(e.currentTarget, () => ledger.load()));
  window.addEventListener('hashchange', () => route(true));
  if (state.token) {
    try { await startSession(); } catch (err) {
      // Refused credentials were already dropped (checkAuthLost); anything
      // else (server down) keeps them so a reload can retry.
      if (state.token) showBanner(`Could not restore the session: ${err.message}`);
    }
  }
  route();
}

main();
