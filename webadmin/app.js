// sipwake web admin: one page, no build step. Every value from the server is put into the
// page as text (textContent, never innerHTML), so a hostile name or User-Agent stays text.

let csrf = null;
const $ = (sel) => document.querySelector(sel);

// h('tag', {attr: value, onclick: fn}, child...) — children are nodes or strings (as text).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
  const res = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (res.status === 401 && path !== '/api/login') { showLogin(); throw new ApiError(401, data); }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

const fmtTime = (s) => (s ? new Date(s).toLocaleString() : '—');
function fmtAge(seconds) {
  if (seconds < 0) return 'expired';
  if (seconds < 90) return `${seconds} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}
const pct = (n) => (Number.isFinite(n) ? `${(n * 100).toFixed(1)} %` : '—');

function errorLine(id) { return h('p', { class: 'error', id, role: 'alert' }); }
function notice(el, text, ok = true) { el.className = ok ? 'notice' : 'error'; el.textContent = text; }
function confirmDo(text) { return window.confirm(text); }

// ---------------------------------------------------------------- login

function showLogin() {
  csrf = null;
  $('#nav').hidden = true;
  $('#logout').hidden = true;
  $('#who').textContent = '';
  $('#view').replaceChildren();
  $('#login').hidden = false;
}

async function start() {
  try {
    const s = await api('GET', '/api/session');
    csrf = s.csrf;
    loggedIn(s.user);
  } catch (e) {
    if (e.status !== 401) throw e;
  }
}


function loggedIn(user) {
  $('#login').hidden = true;
  $('#nav').hidden = false;
  $('#logout').hidden = false;
  $('#who').textContent = user;
  route();
}

$('#login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const f = ev.target;
  const err = $('#login-error');
  err.textContent = '';
  try {
    const s = await api('POST', '/api/login', { user: f.user.value, password: f.password.value });
    csrf = s.csrf;
    f.password.value = '';
    if (!location.hash) location.hash = '#/dashboard';
    loggedIn(s.user);
  } catch (e) {
    err.textContent = e.status === 429 ? `${e.message}` : e.message;
  }
});

$('#logout').addEventListener('click', async () => {
  try { await api('POST', '/api/logout', {}); } catch (e) { /* the session is gone anyway */ }
  showLogin();
});

// ---------------------------------------------------------------- charts

// A small line chart of series (arrays of numbers) as inline SVG.
function sparkline(series, classes) {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('class', 'chart');
  svg.setAttribute('viewBox', '0 0 300 70');
  svg.setAttribute('preserveAspectRatio', 'none');
  const max = Math.max(1, ...series.flat());
  series.forEach((values, i) => {
    if (values.length === 0) return;
    const step = values.length > 1 ? 300 / (values.length - 1) : 0;
    const pts = values.map((v, k) => `${(k * step).toFixed(1)},${(66 - (v / max) * 62).toFixed(1)}`);
    if (values.length === 1) pts.push(`300,${pts[0].split(',')[1]}`);
    const line = document.createElementNS(NS, 'polyline');
    line.setAttribute('points', pts.join(' '));
    line.setAttribute('class', classes[i]);
    svg.append(line);
  });
  return svg;
}

function legend(items) {
  return h('div', { class: 'legend' }, items.map(([text, cls]) => [h('span', { class: `sw ${cls}` }), text]));
}

// Differences between consecutive samples of a cumulative counter.
function deltas(series, pick) {
  const out = [];
  for (let i = 1; i < series.length; i++) out.push(Math.max(0, pick(series[i]) - pick(series[i - 1])));
  return out;
}

// ---------------------------------------------------------------- dashboard

async function viewDashboard(view) {
  const [stats, policy] = await Promise.all([api('GET', '/api/stats'), api('GET', '/api/policy')]);
  const s = stats.series;
  const first = s[0], now = stats.now;
  const span = `last ${fmtAge(Math.max(60, now.t - first.t))}`;
  const cards = [];

  for (const p of ['apns', 'fcm', 'webpush']) {
    const ok = now.push[p].delivered - first.push[p].delivered;
    const bad = now.push[p].failed - first.push[p].failed;
    const allOk = now.push[p].delivered, allBad = now.push[p].failed;
    const rate = allOk + allBad ? allBad / (allOk + allBad) : NaN;
    cards.push(h('div', { class: 'card', 'data-card': `push-${p}` },
      h('h2', {}, `${p === 'apns' ? 'APNs' : p === 'fcm' ? 'FCM' : 'Web Push'} failure rate`),
      h('div', { class: `big ${rate > 0.05 ? 'bad' : 'ok'}` }, pct(rate)),
      h('div', { class: 'muted' }, `${allOk} delivered, ${allBad} failed since start; ${span}: ${ok} / ${bad}`),
      sparkline([deltas(s, (x) => x.push[p].delivered), deltas(s, (x) => x.push[p].failed)], ['a', 'b']),
      legend([['delivered', 'a'], ['failed', 'b']])));
  }
  const woken = now.woken, timeouts = now.timeouts;
  const back = woken + timeouts ? woken / (woken + timeouts) : NaN;
  cards.push(h('div', { class: 'card', 'data-card': 'rereg' },
    h('h2', {}, 'Back after a push'),
    h('div', { class: `big ${back < 0.9 ? 'warn' : 'ok'}` }, pct(back)),
    h('div', { class: 'muted' }, `phones that registered again in time; mean wake ${stats.wake_latency.mean_s.toFixed(2)} s`),
    sparkline([deltas(s, (x) => x.woken), deltas(s, (x) => x.timeouts)], ['a', 'b']),
    legend([['woken', 'a'], ['timed out', 'b']])));
  cards.push(h('div', { class: 'card', 'data-card': 'bucket' },
    h('h2', {}, 'Calls and messages in the bucket'),
    h('div', { class: 'big' }, `${woken} / ${timeouts}`),
    h('div', { class: 'muted' }, `completed / timed out; ${now.cancelled} given up; ${stats.counters['bucket:depth']} waiting now`)));
  cards.push(h('div', { class: 'card', 'data-card': 'pending' },
    h('h2', {}, 'Pending messages'),
    h('div', { class: 'big' }, String(now.pending)),
    sparkline([s.map((x) => x.pending)], ['a']),
    h('a', { href: '#/messages' }, 'see them')));
  cards.push(h('div', { class: 'card', 'data-card': 'contacts' },
    h('h2', {}, 'Registered contacts'),
    h('div', { class: 'big' }, String(now.contacts)),
    sparkline([s.map((x) => x.contacts)], ['a']),
    h('div', { class: 'muted' }, `${stats.counters['usrloc:registered_users']} AORs`)));
  cards.push(h('div', { class: 'card', 'data-card': 'policy' },
    h('h2', {}, 'Policy'),
    h('div', { class: 'big' }, `gen. ${policy.generation}`),
    h('div', { class: 'muted wrap' }, `${policy.file}, loaded ${fmtTime(policy.loaded_at)}`),
    policy.last_error ? h('p', { class: 'error' }, `last reload failed: ${policy.last_error}`) : null));

  const warnings = stats.expiry_warnings;
  const expiry = h('div', { class: 'card', id: 'expiry' }, h('h2', {}, 'Credential expiry'),
    warnings.length === 0 ? h('p', { class: 'ok' }, 'No certificate expires in the next 60 days.')
      : h('ul', {}, warnings.map((w) => h('li', { class: w.days_left < 0 ? 'bad' : 'warn' },
        `${w.set} ${w.kind}: ${w.days_left < 0 ? 'EXPIRED' : `expires in ${w.days_left} days`} (${fmtTime(w.expires)})`))));

  // credential sets a push service refused (Web Push 401/403, FCM 401/403): every push
  // through them fails until the operator fixes them
  const problems = stats.credential_problems || [];
  const refused = h('div', { class: 'card', id: 'credential-problems' }, h('h2', {}, 'Push credentials refused'),
    problems.length === 0 ? h('p', { class: 'ok' }, 'No push service has refused sipwake\'s credentials.')
      : h('ul', {}, problems.map((p) => h('li', { class: p.resolved ? 'muted' : 'bad' },
        `${p.provider}${p.origin ? ` at ${p.origin}` : ''} via ${p.credentials}: ${p.status} ${p.reason}, ${p.count} push${p.count === 1 ? '' : 'es'}, last ${fmtTime(p.last)}`
        + (p.resolved ? `; delivered again since ${fmtTime(p.resolved)}` : '')))));

  view.replaceChildren(
    h('div', { class: 'row' }, h('h1', {}, 'Dashboard'),
      h('span', { class: 'muted' }, `sipwake ${stats.version}, up ${fmtAge(stats.uptime)}; charts: one point a minute, ${span}`)),
    expiry, refused, h('div', { class: 'grid' }, cards));
}

// ---------------------------------------------------------------- tenants

function readFile(file, binary) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onerror = () => reject(new Error('cannot read the file'));
    r.onload = () => resolve(binary ? String(r.result).replace(/^data:[^,]*,/, '') : String(r.result));
    if (binary) r.readAsDataURL(file); else r.readAsText(file);
  });
}

function credentialForm(tenant, onDone) {
  const err = errorLine();
  const kind = h('select', { name: 'kind' },
    h('option', { value: 'apns_key' }, 'APNs key (.p8)'),
    h('option', { value: 'apns_certificate' }, 'APNs certificate (.pem or .p12)'),
    h('option', { value: 'fcm' }, 'FCM service account (.json)'),
    h('option', { value: 'vapid' }, 'Web Push VAPID key pair'));
  const keyId = h('label', {}, 'Key ID', h('input', { name: 'key_id', maxlength: 64 }));
  const teamId = h('label', {}, 'Team ID', h('input', { name: 'team_id', maxlength: 64 }));
  /* the FCM project's number (the sender ID Linphone Android puts in pn-param), optional */
  const projectNumber = h('label', { hidden: true }, 'Project number (sender ID)',
    h('input', { name: 'project_number', maxlength: 20, inputmode: 'numeric', pattern: '[0-9]{1,20}' }));
  const password = h('label', { hidden: true }, '.p12 password', h('input', { name: 'password', type: 'password' }));
  /* the APNs environments a key or certificate serves: apns is production, apns.dev the sandbox */
  const environment = h('label', {}, 'APNs environment', h('select', { name: 'environment' },
    h('option', { value: 'both' }, 'production and sandbox'),
    h('option', { value: 'production' }, 'production only'),
    h('option', { value: 'sandbox' }, 'sandbox only')));
  const fileInput = h('input', { name: 'file', type: 'file' });
  const fileLabel = h('label', {}, 'File', fileInput);
  const submit = h('button', { type: 'submit' }, 'Upload');
  const sync = () => {
    keyId.hidden = teamId.hidden = kind.value !== 'apns_key';
    password.hidden = kind.value !== 'apns_certificate';
    projectNumber.hidden = kind.value !== 'fcm';
    environment.hidden = kind.value !== 'apns_key' && kind.value !== 'apns_certificate';
    /* a VAPID key pair is made on the server unless a PEM key is given */
    submit.textContent = kind.value === 'vapid' ? 'Make or import' : 'Upload';
    fileLabel.firstChild.textContent = kind.value === 'vapid' ? 'Private key (optional)' : 'File';
  };
  kind.addEventListener('change', sync);
  const form = h('form', { class: 'inline', 'data-form': 'credential' },
    h('label', {}, 'Kind', kind),
    h('label', {}, 'Set', h('input', { name: 'set', value: 'default', maxlength: 64 })),
    keyId, teamId, projectNumber, password, environment, fileLabel, submit);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.textContent = '';
    const f = form.elements;
    const file = f.file.files[0];
    const k = kind.value;
    if (!file && k !== 'vapid') { notice(err, 'Choose the file to upload.', false); return; }
    if (file && file.size > 200000) { notice(err, 'That file is too large for a credential.', false); return; }
    const body = {};
    try {
      if (k === 'vapid') { if (file) body.private_key = await readFile(file); }
      else if (k === 'apns_key') Object.assign(body, { key_id: f.key_id.value.trim(), team_id: f.team_id.value.trim(), key: await readFile(file) });
      else if (k === 'apns_certificate') {
        if (/\.(p12|pfx)$/i.test(file.name)) Object.assign(body, { pkcs12: await readFile(file, true), password: f.password.value });
        else body.certificate = await readFile(file);
      } else {
        body.service_account = await readFile(file);
        if (f.project_number.value.trim()) body.project_number = f.project_number.value.trim();
      }
      if (k === 'apns_key' || k === 'apns_certificate') body.environment = f.environment.value;
      await api('PUT', `/api/tenants/${encodeURIComponent(tenant)}/credentials/${encodeURIComponent(f.set.value.trim())}/${k}`, body);
      onDone();
    } catch (e) { notice(err, e.message, false); }
  });
  sync();
  return h('div', {}, form, err);
}

async function viewTenants(view) {
  const tenants = await api('GET', '/api/tenants');
  const err = errorLine('tenant-error');
  const reload = () => viewTenants(view).catch((e) => notice(err, e.message, false));
  const add = h('form', { class: 'inline', id: 'tenant-add' },
    h('label', {}, 'Name', h('input', { name: 'name', required: true, maxlength: 200 })),
    h('label', {}, 'SIP domains (comma-separated)', h('input', { name: 'domains' })),
    h('button', { type: 'submit' }, 'Create tenant'));
  add.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const domains = add.elements.domains.value.split(',').map((d) => d.trim()).filter(Boolean);
    try { await api('POST', '/api/tenants', { name: add.elements.name.value.trim(), domains }); reload(); }
    catch (e) { notice(err, `${add.elements.name.value}: ${e.message}`, false); }
  });

  const list = tenants.map((t) => {
    const terr = errorLine();
    const act = (fn) => async () => { try { await fn(); reload(); } catch (e) { notice(terr, e.message, false); } };
    const domForm = h('form', { class: 'inline' },
      h('label', {}, 'Add a domain', h('input', { name: 'domain', required: true })),
      h('button', { type: 'submit', class: 'secondary' }, 'Add'));
    domForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      act(() => api('POST', `/api/tenants/${encodeURIComponent(t.name)}/domains`, { domain: domForm.elements.domain.value.trim() }))();
    });
    const creds = t.credential_sets.flatMap((set) => set.credentials.map((c) => h('tr', {},
      h('td', {}, set.name), h('td', {}, c.kind),
      h('td', { class: 'wrap' }, [c.key_id && `key ${c.key_id}`, c.team_id && `team ${c.team_id}`, c.uid && `topic ${c.uid}`,
        c.environment && c.environment !== 'both' && `${c.environment} only`,
        c.project_id && `project ${c.project_id}`, c.project_number && `project number ${c.project_number}`, c.public_key && `public key ${c.public_key}`, c.subject].filter(Boolean).join(', ')),
      h('td', {}, c.expires ? h('span', { class: `badge ${c.days_left < 0 ? 'bad' : c.days_left < 60 ? 'warn' : ''}` },
        `${fmtTime(c.expires)} (${c.days_left} d)`) : '—'),
      h('td', {}, fmtTime(c.added)),
      h('td', {}, h('button', { class: 'danger', onclick: act(() => confirmDo(`Delete ${c.kind} of ${t.name}/${set.name}?`)
        && api('DELETE', `/api/tenants/${encodeURIComponent(t.name)}/credentials/${encodeURIComponent(set.name)}/${c.kind}`)) }, 'Delete')))));
    return h('section', { class: 'card', 'data-tenant': t.name },
      h('div', { class: 'row' }, h('h2', {}, t.name),
        h('span', {},
          h('button', { class: 'secondary', onclick: act(async () => {
            const to = window.prompt(`New name for ${t.name}`, t.name);
            if (to && to !== t.name) await api('PATCH', `/api/tenants/${encodeURIComponent(t.name)}`, { name: to });
          }) }, 'Rename'), ' ',
          h('button', { class: 'danger', onclick: act(() => confirmDo(`Delete tenant ${t.name}, its domains and credentials?`)
            && api('DELETE', `/api/tenants/${encodeURIComponent(t.name)}`)) }, 'Delete'))),
      h('p', {}, 'Domains: ', t.domains.length ? t.domains.map((d) => h('span', { class: 'badge' }, d, ' ',
        h('button', { class: 'link remove', title: `remove ${d}`, onclick: act(() =>
          api('DELETE', `/api/tenants/${encodeURIComponent(t.name)}/domains/${encodeURIComponent(d)}`)) }, '×'))) : h('span', { class: 'muted' }, 'none')),
      domForm,
      h('h2', { class: 'spaced' }, 'Push credentials'),
      creds.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'creds' },
        h('thead', {}, h('tr', {}, ['Set', 'Kind', 'Identity', 'Expires', 'Added', ''].map((x) => h('th', {}, x)))),
        h('tbody', {}, creds))) : h('p', { class: 'muted' }, 'None yet. Secrets are write-only: once uploaded they are never shown again.'),
      credentialForm(t.name, reload), terr);
  });
  view.replaceChildren(h('h1', {}, 'Tenants and push credentials'),
    h('section', { class: 'card' }, add, err), ...list);
}

// ---------------------------------------------------------------- registrations

async function viewRegistrations(view, query) {
  const q = query.get('aor') || '';
  const data = await api('GET', `/api/registrations?aor=${encodeURIComponent(q)}&limit=200`);
  const err = errorLine();
  const search = h('form', { class: 'inline', id: 'reg-search' },
    h('label', {}, 'AOR contains', h('input', { name: 'aor', value: q })), h('button', { type: 'submit' }, 'Search'));
  search.addEventListener('submit', (ev) => { ev.preventDefault(); location.hash = `#/registrations?aor=${encodeURIComponent(search.elements.aor.value)}`; });
  const rows = data.aors.flatMap((a) => a.bindings.map((b) => h('tr', { 'data-aor': a.aor },
    h('td', { class: 'wrap' }, a.aor),
    h('td', { class: 'wrap' }, b.contact),
    h('td', {}, b.provider || '—', b.token_hash ? h('div', { class: 'muted' }, b.token_hash) : null),
    h('td', {}, b.transport, b.connected ? h('div', { class: 'muted' }, 'connected') : null),
    h('td', { class: 'wrap ua' }, b.user_agent || ''),
    h('td', {}, fmtTime(b.last_refresh)),
    h('td', {}, fmtAge(b.expires_in)),
    h('td', {}, h('button', { class: 'danger', onclick: async () => {
      if (!confirmDo(`Remove this binding of ${a.aor}?`)) return;
      try { await api('DELETE', `/api/registrations/${encodeURIComponent(a.aor)}/${b.contact_id}`); viewRegistrations(view, query); }
      catch (e) { notice(err, e.message, false); }
    } }, 'Remove')))));
  view.replaceChildren(h('h1', {}, 'Registrations'),
    h('section', { class: 'card' }, search,
      h('p', { class: 'muted' }, `${data.matched} of ${data.total_aors} AORs match${data.matched > data.aors.length ? `; the first ${data.aors.length} shown` : ''}.`), err,
      rows.length ? h('div', { class: 'table-wrap' }, h('table', { id: 'registrations' },
        h('thead', {}, h('tr', {}, ['AOR', 'Contact', 'Push', 'Transport', 'User agent', 'Last refresh', 'Expires in', ''].map((x) => h('th', {}, x)))),
        h('tbody', {}, rows))) : h('p', { class: 'muted' }, 'No registration matches.')));
}

// ---------------------------------------------------------------- messages

async function viewMessages(view) {
  const rows = await api('GET', '/api/messages');
  const err = errorLine();
  view.replaceChildren(h('h1', {}, 'Pending messages'),
    h('section', { class: 'card' }, err,
      rows.length ? h('div', { class: 'table-wrap' }, h('table', { id: 'messages' },
        h('thead', {}, h('tr', {}, ['AOR', 'Waiting', 'Devices (oldest)', ''].map((x) => h('th', {}, x)))),
        h('tbody', {}, rows.map((m) => h('tr', { 'data-aor': m.aor },
          h('td', { class: 'wrap' }, m.aor), h('td', {}, String(m.count)),
          h('td', { class: 'wrap' }, m.devices.map((d) => h('div', {}, `${d.device}: ${d.count} (${fmtTime(d.oldest)})`))),
          h('td', {}, h('button', { class: 'danger', onclick: async () => {
            if (!confirmDo(`Delete every stored message of ${m.aor}? They will never be delivered.`)) return;
            try { await api('DELETE', `/api/messages/${encodeURIComponent(m.aor)}`); viewMessages(view); }
            catch (e) { notice(err, e.message, false); }
          } }, 'Purge'))))))) : h('p', { class: 'muted' }, 'No message is waiting for a device.')));
}

// ---------------------------------------------------------------- push log

async function viewPushLog(view, query) {
  const params = new URLSearchParams();
  for (const k of ['tenant', 'provider', 'reason']) if (query.get(k)) params.set(k, query.get(k));
  params.set('limit', '200');
  const rows = await api('GET', `/api/push-log?${params}`);
  const filter = h('form', { class: 'inline', id: 'push-filter' },
    h('label', {}, 'Tenant', h('input', { name: 'tenant', value: query.get('tenant') || '' })),
    h('label', {}, 'Provider', h('select', { name: 'provider' }, ['', 'apns', 'apns.dev', 'fcm', 'webpush'].map((p) =>
      h('option', { value: p, selected: p === (query.get('provider') || '') }, p || 'any')))),
    h('label', {}, 'Outcome or reason', h('input', { name: 'reason', value: query.get('reason') || '' })),
    h('button', { type: 'submit' }, 'Filter / refresh'));
  filter.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    for (const k of ['tenant', 'provider', 'reason']) if (filter.elements[k].value.trim()) p.set(k, filter.elements[k].value.trim());
    const hash = `#/push-log?${p}`;
    if (location.hash === hash) route(); else location.hash = hash; /* the same filter: fetch again */
  });
  view.replaceChildren(h('h1', {}, 'Push log'),
    h('section', { class: 'card' }, filter,
      rows.length ? h('div', { class: 'table-wrap' }, h('table', { id: 'push-log' },
        h('thead', {}, h('tr', {}, ['Time', 'Tenant / set', 'Provider', 'Kind', 'AOR', 'Outcome', 'Reason', 'Latency'].map((x) => h('th', {}, x)))),
        h('tbody', {}, rows.map((r) => h('tr', {},
          h('td', {}, fmtTime(r.time)), h('td', {}, r.credentials || r.tenant || '—'), h('td', {}, r.provider), h('td', {}, r.kind),
          h('td', { class: 'wrap' }, r.aor || ''),
          h('td', { class: r.outcome === 'delivered' ? 'ok' : 'bad' }, r.outcome, r.status ? ` (${r.status})` : ''),
          h('td', { class: 'wrap' }, r.reason || ''), h('td', {}, `${r.latency_ms} ms`)))))) : h('p', { class: 'muted' }, 'No push matches.')));
}

// ---------------------------------------------------------------- policy, audit

async function viewPolicy(view) {
  const p = await api('GET', '/api/policy');
  const out = h('p', { id: 'reload-result', class: 'notice' });
  const button = h('button', { id: 'reload', onclick: async () => {
    button.disabled = true;
    try {
      const r = await api('POST', '/api/policy/reload', {});
      await viewPolicy(view);
      notice($('#reload-result'), `Reloaded: generation ${r.generation}.`);
    } catch (e) {
      await viewPolicy(view);
      notice($('#reload-result'), `Reload failed, generation ${e.body ? e.body.generation : '?'} stays: ${e.message}`, false);
    }
  } }, 'Reload the policy');
  view.replaceChildren(h('h1', {}, 'Policy'),
    h('section', { class: 'card' },
      h('table', {}, h('tbody', {},
        h('tr', {}, h('th', {}, 'File'), h('td', { class: 'wrap', id: 'policy-file' }, p.file)),
        h('tr', {}, h('th', {}, 'Generation'), h('td', { id: 'policy-generation' }, String(p.generation))),
        h('tr', {}, h('th', {}, 'Loaded'), h('td', {}, fmtTime(p.loaded_at))),
        h('tr', {}, h('th', {}, 'Reloads'), h('td', {}, `${p.reloads} done, ${p.failures} refused`)),
        h('tr', {}, h('th', {}, 'Last error'), h('td', {}, p.last_error
          ? h('pre', { id: 'policy-error' }, `${fmtTime(p.failed_at)}\n${p.last_error}`) : h('span', { class: 'ok' }, 'none'))))),
      h('p', {}, button, ' ', h('span', { class: 'muted' }, 'A policy that fails to load is refused; the running one stays.')), out));
}

async function viewAudit(view) {
  const rows = await api('GET', '/api/audit?limit=200');
  view.replaceChildren(h('h1', {}, 'Audit log'),
    h('section', { class: 'card' }, h('div', { class: 'table-wrap' }, h('table', { id: 'audit' },
      h('thead', {}, h('tr', {}, ['Time', 'Who', 'What', 'On', 'Detail', 'From'].map((x) => h('th', {}, x)))),
      h('tbody', {}, rows.map((r) => h('tr', {}, h('td', {}, fmtTime(r.time)), h('td', {}, r.who), h('td', {}, r.action),
        h('td', { class: 'wrap' }, r.object || ''), h('td', { class: 'wrap' }, r.detail || ''), h('td', {}, r.source || ''))))))));
}

// ---------------------------------------------------------------- router

const views = {
  dashboard: viewDashboard, tenants: viewTenants, registrations: viewRegistrations,
  messages: viewMessages, 'push-log': viewPushLog, policy: viewPolicy, audit: viewAudit,
};

async function route() {
  if (!csrf) return;
  const [path, qs] = (location.hash.replace(/^#\/?/, '') || 'dashboard').split('?');
  const name = views[path] ? path : 'dashboard';
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.getAttribute('href') === `#/${name}`);
  const view = $('#view');
  view.setAttribute('data-view', name);
  view.setAttribute('aria-busy', 'true');
  try {
    await views[name](view, new URLSearchParams(qs || ''));
  } catch (e) {
    if (e.status !== 401) view.replaceChildren(h('p', { class: 'error' }, `Could not load this page: ${e.message}`));
  } finally {
    view.setAttribute('aria-busy', 'false');
  }
}

window.addEventListener('hashchange', route);
start().catch((e) => { $('#view').replaceChildren(h('p', { class: 'error' }, e.message)); });
