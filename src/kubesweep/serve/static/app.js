// kubesweep serve: the page. Plain JavaScript, no build step; plotly.js is the copy the plotly
// Python package ships, served by this same server (/static/plotly.min.js) and loaded only when a
// plot is first shown. Every text from the server (experiment, trial and parameter names, values,
// logs) goes into the page through textContent, never as HTML.
//
// Routes (the URL fragment): #/ experiments, #/e/NAME trials, #/e/NAME/plots plots,
// #/e/NAME/t/TRIAL a trial's log. A first load with #token=... keeps the token in sessionStorage
// (this tab only; never a cookie) and sends it as "Authorization: Bearer" (EventSource cannot set
// headers: it gets ?token=). TensorBoard's POST answers a path on this server and the cookie that
// opens it (TensorBoard's own page cannot send the header).
'use strict';

(function () {
  const STATES = ['pending', 'running', 'succeeded', 'failed', 'pruned', 'cancelled'];
  const FINAL = new Set(['succeeded', 'failed', 'pruned', 'cancelled']);
  const ROW_FLUSH_MS = 250;      // table updates from events: at most four times a second
  const PLOT_FLUSH_MS = 2000;    // plots: at most every two seconds
  const CURVES_REFRESH_MS = 10000;
  const LOG_KEEP = 2000000;      // characters of a followed log kept on the page
  const $ = (id) => document.getElementById(id);
  const collator = new Intl.Collator(undefined, {numeric: true, sensitivity: 'base'});

  // ---- the token ---------------------------------------------------------------------------
  let token = sessionStorage.getItem('kubesweep.token') || '';
  // at the first load, and when an address with #token= is opened in a tab that has the page
  function takeToken() {
    const m = /(^#|[&?])token=([^&]*)/.exec(location.hash);
    if (!m) return;
    token = decodeURIComponent(m[2]);
    if (source) { source.close(); source = null; }  // its ?token= was the old one
    sessionStorage.setItem('kubesweep.token', token);
    let rest = location.hash.slice(0, m.index) + location.hash.slice(m.index + m[0].length);
    rest = rest.replace(/^#[&?]?/, '#').replace(/[&?]$/, '');
    history.replaceState(null, '', location.pathname + location.search + (rest.length > 1 ? rest : '#/'));
  }

  function authHeaders() { return token ? {Authorization: 'Bearer ' + token} : {}; }

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  function detailText(body, status) {
    if (!body) return 'HTTP ' + status;
    if (typeof body.message === 'string') {
      const lines = (body.errors || []).map((e) => `line ${e.line}, column ${e.column}: ${e.message}`);
      return [body.message].concat(lines).join('\n');
    }
    const d = body.detail;
    if (typeof d === 'string') return d;
    if (Array.isArray(d)) return d.map((e) => (e.loc || []).join('.') + ': ' + e.msg).join('\n');
    return 'HTTP ' + status;
  }

  async function api(path, opts = {}) {
    const r = await fetch(path, Object.assign({}, opts, {headers: Object.assign(authHeaders(), opts.headers || {})}));
    if (!r.ok) {
      let body = null;
      try { body = await r.json(); } catch (e) { /* not JSON */ }
      let text = detailText(body, r.status);
      if (r.status === 401) text += ' — open the address `kubesweep serve` printed (it ends in #token=...)';
      throw new ApiError(r.status, text);
    }
    return r.status === 204 ? null : r.json();
  }

  function enc(s) { return encodeURIComponent(s); }
  function expPath(name) { return '/api/experiments/' + enc(name); }

  // ---- small view helpers ------------------------------------------------------------------
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function link(href, text) { const a = el('a', null, text); a.href = href; return a; }
  function setText(e, text) { text = text === null || text === undefined ? '' : String(text); if (e.textContent !== text) e.textContent = text; }

  let msgTimer = null;
  function say(text, ok) {
    const m = $('msg');
    m.textContent = text;
    m.className = ok ? 'msg ok' : 'msg';
    m.hidden = false;
    clearTimeout(msgTimer);
    if (ok) msgTimer = setTimeout(() => { m.hidden = true; }, 6000);
  }
  function hush() { $('msg').hidden = true; }
  function fail(err) { say(err && err.message ? err.message : String(err)); if (!(err instanceof ApiError)) console.error(err); }

  function fmtNum(v) {
    if (typeof v !== 'number' || !Number.isFinite(v)) return v === null || v === undefined ? '' : String(v);
    if (Number.isInteger(v) && Math.abs(v) < 1e9) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(3);
    return String(parseFloat(v.toPrecision(5)));
  }
  function fmtParam(v) {
    if (v === null || v === undefined) return '';
    if (typeof v === 'number') return fmtNum(v);
    if (typeof v === 'object') return JSON.stringify(v);
    return String(v);
  }
  function fmtDuration(s) {
    if (typeof s !== 'number' || !Number.isFinite(s)) return '';
    s = Math.max(0, Math.round(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return h ? `${h}h ${m}m` : m ? `${m}m ${r}s` : `${r}s`;
  }
  function seconds(row) {
    if (typeof row.duration === 'number') return row.duration;
    if (!row.start) return null;
    const start = Date.parse(row.start);
    if (Number.isNaN(start)) return null;
    const end = row.end ? Date.parse(row.end) : (row.state === 'running' ? Date.now() : NaN);
    return Number.isNaN(end) ? null : (end - start) / 1000;
  }

  // ---- live events -------------------------------------------------------------------------
  let source = null;
  let sourceKey = null;
  let onEvent = () => {};
  let onResync = () => {};

  function follow(experiment) {
    const key = experiment || '';
    if (source && sourceKey === key) return;
    if (source) source.close();
    const q = new URLSearchParams();
    if (experiment) q.set('experiment', experiment);
    if (token) q.set('token', token);
    const s = new EventSource('/api/events' + (q.toString() ? '?' + q : ''));
    let broken = false;
    s.addEventListener('open', () => {
      $('live').textContent = 'live';
      $('live').className = 'live on';
      if (broken) onResync();  // missed events while away: read the state again
      broken = false;
    });
    s.addEventListener('error', () => {
      broken = true;
      $('live').textContent = s.readyState === EventSource.CLOSED ? 'offline' : 'reconnecting';
      $('live').className = 'live';
    });
    for (const kind of ['trial', 'experiment', 'progress']) {
      s.addEventListener(kind, (e) => {
        let data;
        try { data = JSON.parse(e.data); } catch (err) { return; }
        onEvent(kind, data);
      });
    }
    source = s;
    sourceKey = key;
  }

  // ---- the experiments list ----------------------------------------------------------------
  const list = {rows: new Map(), summaries: new Map()};

  function progressBar(counts, total) {
    const bar = el('div', 'bar');
    const title = [];
    for (const s of STATES) {
      const n = (counts && counts[s]) || 0;
      if (n) title.push(`${s} ${n}`);
      if (!n || s === 'pending' || !total) continue;
      const i = el('i', 'b-' + s);
      i.style.width = (100 * n / total) + '%';
      bar.append(i);
    }
    bar.title = title.join(', ');
    return bar;
  }

  function sweptBy(who) {
    return `swept by process ${who.pid ?? '?'} on ${who.host ?? '?'} since ${who.since ?? '?'}, not by this server`;
  }

  function listRow(sum) {
    const tr = document.createElement('tr');
    tr.dataset.experiment = sum.name;
    const name = el('td');
    name.append(link('#/e/' + enc(sum.name), sum.name));
    if (sum.driven) { name.append(' '); name.append(el('span', 'badge', 'live')); }
    else if (sum.swept_by) {  // swept from a shell (or another server) of this project
      const b = el('span', 'badge', 'elsewhere');
      b.title = sweptBy(sum.swept_by);
      name.append(' ');
      name.append(b);
    }
    const best = sum.best || null;
    const done = STATES.filter((s) => FINAL.has(s)).reduce((n, s) => n + ((sum.counts || {})[s] || 0), 0);
    const prog = el('td');
    prog.append(progressBar(sum.counts, sum.total));
    const tdTotal = el('td', 'num', `${done} / ${sum.total}`);
    tdTotal.title = STATES.map((s) => `${s}: ${(sum.counts || {})[s] || 0}`).join('\n');
    tr.append(name, el('td', null, sum.namespace), el('td', 'state s-' + sum.state, sum.state), tdTotal, prog,
              el('td', 'num', best ? fmtNum(best.value) : ''), el('td', null, best ? best.trial : ''));
    return tr;
  }

  function putListRow(sum) {
    list.summaries.set(sum.name, sum);
    const tr = listRow(sum);
    const old = list.rows.get(sum.name);
    if (old) old.replaceWith(tr); else $('experiments').tBodies[0].append(tr);
    list.rows.set(sum.name, tr);
    $('no-experiments').hidden = list.rows.size > 0;
  }

  async function showList() {
    show('view-list');
    crumbs([]);
    follow(null);
    onEvent = (kind, data) => { if (kind === 'experiment' && data.name) putListRow(data); };
    onResync = () => loadList().catch(fail);
    await loadList();
    mark('list');
  }

  async function loadList() {
    const got = await api('/api/experiments');
    const body = $('experiments').tBodies[0];
    body.textContent = '';
    list.rows.clear();
    for (const sum of got.experiments) putListRow(sum);
    $('no-experiments').hidden = got.experiments.length > 0;
  }

  // ---- one experiment ----------------------------------------------------------------------
  const exp = {
    name: null, summary: null, rows: new Map(), trs: new Map(), order: [], columns: [],
    sort: {key: 'name', dir: 1}, filter: '', dirty: new Set(), reorder: false, flushTimer: null,
    curves: {}, curvesAt: 0, curvesStale: true, plotsDirty: true, plotTimer: null, plotsShown: false, plotMs: 0,
    tab: 'trials', cancelArmed: null,
  };

  function columnsFor(sum) {
    const metric = sum.metric || 'metric';
    const cols = [
      {key: 'name', label: 'Trial', value: (r) => r.name},
      {key: 'state', label: 'State', value: (r) => r.state},
      {key: 'node', label: 'Node', value: (r) => r.node},
      {key: 'metric', label: metric, num: true, value: (r) => r.metric, text: (r) => fmtNum(r.metric)},
      {key: 'step', label: 'Step', num: true, value: (r) => r.step, text: (r) => fmtNum(r.step)},
      {key: 'duration', label: 'Duration', num: true, value: seconds, text: (r) => fmtDuration(seconds(r))},
    ];
    for (const p of sum.parameters || []) {
      cols.push({key: 'p:' + p, label: p, param: true, value: (r) => (r.params || {})[p], text: (r) => fmtParam((r.params || {})[p])});
    }
    return cols;
  }

  function headerRow() {
    const tr = $('trials').tHead.rows[0];
    tr.textContent = '';
    for (const c of exp.columns) {
      const th = el('th', 'sortable' + (c.num ? ' num' : ''), c.label);
      th.dataset.key = c.key;
      th.tabIndex = 0;
      th.title = 'sort by ' + c.label;
      if (c.key === exp.sort.key) th.setAttribute('aria-sort', exp.sort.dir > 0 ? 'ascending' : 'descending');
      tr.append(th);
    }
  }

  function makeTr(row) {
    const tr = document.createElement('tr');
    for (const c of exp.columns) {
      const td = el('td', c.num ? 'num' : null);
      if (c.key === 'name') {
        const a = link('#/e/' + enc(exp.name) + '/t/' + enc(row.name), row.name);
        a.title = 'log of ' + row.name;
        td.append(a);
      }
      tr.append(td);
    }
    fillTr(tr, row);
    return tr;
  }

  function fillTr(tr, row) {
    const cells = tr.cells;
    exp.columns.forEach((c, i) => {
      if (c.key === 'name') return;
      const td = cells[i];
      setText(td, c.text ? c.text(row) : c.value(row));
      if (c.key === 'state') { const cls = 's-' + row.state; if (td.className !== cls) td.className = cls; }
    });
    if (row.message) tr.title = row.message; else tr.removeAttribute('title');
    row._hay = null;
  }

  function haystack(row) {
    if (row._hay === null || row._hay === undefined) {
      const parts = [row.name, row.state, row.node || ''];
      for (const v of Object.values(row.params || {})) parts.push(fmtParam(v));
      row._hay = parts.join('\u0000').toLowerCase();
    }
    return row._hay;
  }

  function compare(col, dir) {
    return (a, b) => {
      const x = col.value(a), y = col.value(b);
      const xn = x === null || x === undefined || x === '', yn = y === null || y === undefined || y === '';
      if (xn || yn) return xn && yn ? collator.compare(a.name, b.name) : (xn ? 1 : -1);  // blanks last
      let d;
      if (typeof x === 'number' && typeof y === 'number') d = x - y;
      else if (col.key === 'state') d = STATES.indexOf(x) - STATES.indexOf(y);
      else d = collator.compare(String(x), String(y));
      return d ? d * dir : collator.compare(a.name, b.name);
    };
  }

  // Puts the table's rows in order (sorted, filtered), moving nodes only when the order changed.
  function arrange() {
    const col = exp.columns.find((c) => c.key === exp.sort.key) || exp.columns[0];
    const f = exp.filter;
    let rows = Array.from(exp.rows.values());
    if (f) rows = rows.filter((r) => haystack(r).includes(f));
    rows.sort(compare(col, exp.sort.dir));
    const names = rows.map((r) => r.name);
    const same = names.length === exp.order.length && names.every((n, i) => n === exp.order[i]);
    if (!same) {
      const frag = document.createDocumentFragment();
      for (const n of names) frag.append(exp.trs.get(n));
      const body = $('trials').tBodies[0];
      body.textContent = '';
      body.append(frag);
      exp.order = names;
    }
    setText($('shown'), f ? `${names.length} of ${exp.rows.size} shown` : '');
  }

  function renderSummary() {
    const sum = exp.summary;
    if (!sum) return;
    setText($('exp-name'), sum.name);
    const st = $('exp-state');
    setText(st, sum.state);
    st.className = 'state s-' + sum.state;
    $('exp-driven').hidden = !sum.driven;
    const counts = Object.fromEntries(STATES.map((s) => [s, 0]));
    for (const r of exp.rows.values()) if (r.state in counts) counts[r.state] += 1;
    const total = Math.max(sum.total || 0, exp.rows.size);
    const parts = [`${sum.namespace}`, `${total} trials`];
    for (const s of STATES) if (counts[s]) parts.push(`${counts[s]} ${s}`);
    const best = sum.best;
    if (best) parts.push(`best ${sum.metric} ${fmtNum(best.value)} (${best.trial})`);
    parts.push(`${sum.direction || ''} ${sum.metric || ''}`.trim());
    if (sum.swept_by && !sum.driven) parts.push(sweptBy(sum.swept_by));
    setText($('exp-summary'), parts.join(' · '));
    const unfinished = counts.pending + counts.running;
    $('btn-cancel').disabled = !sum.driven && !sum.swept_by && unfinished === 0;
    $('btn-retry').disabled = !(counts.failed + counts.cancelled) || sum.driven || !!sum.swept_by;
    $('exp-summary').dataset.counts = JSON.stringify(counts);
  }

  function scheduleFlush() {
    if (exp.flushTimer === null) exp.flushTimer = setTimeout(flush, ROW_FLUSH_MS);
  }

  function flush() {
    exp.flushTimer = null;
    for (const name of exp.dirty) {
      const row = exp.rows.get(name);
      if (!row) continue;
      let tr = exp.trs.get(name);
      if (tr) fillTr(tr, row); else { exp.trs.set(name, makeTr(row)); exp.reorder = true; }
    }
    if (exp.dirty.size) exp.reorder = true;
    exp.dirty.clear();
    if (exp.reorder) { arrange(); exp.reorder = false; }
    renderSummary();
  }

  function schedulePlots() {
    exp.plotsDirty = true;
    if (exp.tab !== 'plots' || exp.plotTimer !== null) return;
    // at most every two seconds, and never more than a fifth of the time drawing (a slow machine)
    exp.plotTimer = setTimeout(() => { exp.plotTimer = null; drawPlots().catch(fail); },
                               Math.max(PLOT_FLUSH_MS, 4 * exp.plotMs));
  }

  // ``early``: an event sent while the experiment was being read, which the read may already be
  // newer than: it does not take a finished trial back to running
  function applyEvent(kind, data, early) {
    if (kind === 'experiment') {
      if (data.name !== exp.name) return;
      exp.summary = Object.assign({}, exp.summary, data);
      scheduleFlush();
      return;
    }
    if (data.experiment !== exp.name) return;
    if (kind === 'trial') {
      const old = exp.rows.get(data.name) || {};
      if (early && FINAL.has(old.state) && !FINAL.has(data.state)) return;
      const row = Object.assign({}, old, data);
      if (row.metric === null && old.metric !== undefined && old.metric !== null && !FINAL.has(row.state)) row.metric = old.metric;
      exp.rows.set(row.name, row);
      exp.dirty.add(row.name);
      if (FINAL.has(row.state)) exp.curvesStale = true;
      scheduleFlush();
      schedulePlots();
    } else if (kind === 'progress') {
      const row = exp.rows.get(data.trial);
      if (!row) return;
      if (data.metric === exp.summary.metric && typeof data.value === 'number') {
        row.metric = data.value;
        if (typeof data.step === 'number') {
          const c = exp.curves[data.trial] || (exp.curves[data.trial] = []);
          if (!c.length || c[c.length - 1][0] < data.step) c.push([data.step, data.value]);
        }
      }
      if (typeof data.step === 'number') row.step = data.step;
      exp.dirty.add(row.name);
      scheduleFlush();
      schedulePlots();
    }
  }

  async function loadExperiment(name) {
    const got = await api(expPath(name));
    const {trials, ...sum} = got;
    exp.summary = sum;
    exp.columns = columnsFor(sum);
    exp.rows = new Map(trials.map((r) => [r.name, r]));
    exp.trs = new Map();
    for (const r of trials) exp.trs.set(r.name, makeTr(r));
    exp.order = [];
    headerRow();
    arrange();
    renderSummary();
    exp.curvesStale = true;
    exp.plotsDirty = true;
  }

  async function showExperiment(name, tab) {
    show('view-exp');
    crumbs([[name, '#/e/' + enc(name)]]);
    const fresh = exp.name !== name;
    if (fresh) {
      exp.name = name;
      exp.summary = null;
      exp.curves = {};
      exp.curvesAt = 0;
      exp.rows = new Map();
      exp.trs = new Map();
      disarmCancel();
      $('trials').tBodies[0].textContent = '';
      $('exp-name').textContent = name;
      $('exp-summary').textContent = 'loading…';
      for (const id of ['plot-parallel', 'plot-curves']) purge($(id));
      for (const d of Array.from($('plot-scatter').children)) purge(d);
      $('plot-scatter').textContent = '';
      exp.plotsShown = false;
      // events that come while the experiment is read are applied after it
      const early = [];
      onEvent = (kind, data) => early.push([kind, data]);
      onResync = () => loadExperiment(name).catch(fail);
      follow(name);
      try {
        await loadExperiment(name);
      } catch (err) {
        if (exp.name === name) exp.name = null;  // read again when asked again
        throw err;
      }
      if (exp.name !== name) return;
      for (const [kind, data] of early) applyEvent(kind, data, true);
      onEvent = applyEvent;
      mark('table');
      // plotly.js (4.8 MB) is read while the user looks at the table, not when Plots is clicked
      (window.requestIdleCallback || setTimeout)(() => { loadPlotly().catch(() => {}); });
    } else {
      follow(name);
    }
    selectTab(tab);
  }

  function selectTab(tab) {
    exp.tab = tab;
    for (const b of document.querySelectorAll('.tab')) b.setAttribute('aria-selected', String(b.dataset.tab === tab));
    $('tab-trials').hidden = tab !== 'trials';
    $('tab-plots').hidden = tab !== 'plots';
    if (tab === 'plots' && (exp.plotsDirty || !exp.plotsShown)) drawPlots().then(() => mark('plots')).catch(fail);
  }

  // ---- plots -------------------------------------------------------------------------------
  let plotlyLoading = null;
  function loadPlotly() {
    if (window.Plotly) return Promise.resolve(window.Plotly);
    if (!plotlyLoading) {
      plotlyLoading = new Promise((resolve, reject) => {
        const s = document.createElement('script');
        s.src = '/static/plotly.min.js';
        s.addEventListener('load', () => resolve(window.Plotly));
        s.addEventListener('error', () => { plotlyLoading = null; reject(new Error('plotly.js could not be loaded from this server')); });
        document.head.append(s);
      });
    }
    return plotlyLoading;
  }
  function purge(div) { if (window.Plotly && div) window.Plotly.purge(div); if (div) div.textContent = ''; }
  function note(div, text) { purge(div); div.append(el('p', 'empty', text)); }

  const CONFIG = {displaylogo: false, responsive: true, displayModeBar: 'hover', modeBarButtonsToRemove: ['sendDataToCloud']};
  const MARGIN = {l: 60, r: 20, t: 40, b: 50};

  // plotly draws its text (titles, ticks, hover labels) from a subset of HTML: user text goes in
  // with its markup characters as entities, which plotly shows as the characters themselves
  function pt(v) { return String(v).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;'); }
  function numeric(values) { return values.every((v) => typeof v === 'number' && Number.isFinite(v)); }
  function logScale(values) {
    if (!numeric(values) || !values.every((v) => v > 0)) return false;
    return Math.max(...values) / Math.min(...values) >= 100;
  }

  async function drawPlots() {
    const t0 = performance.now();
    const Plotly = await loadPlotly();
    const t1 = performance.now();
    performance.measure('kubesweep:plotly-load', {start: t0, end: t1});
    const sum = exp.summary;
    if (!sum || exp.tab !== 'plots') return;
    exp.plotsDirty = false;
    const metric = sum.metric || 'metric';
    const colorscale = 'Viridis';
    const reverse = sum.direction === 'minimize';
    const params = sum.parameters || [];
    const done = Array.from(exp.rows.values()).filter((r) => typeof r.metric === 'number' && Number.isFinite(r.metric));
    done.sort((a, b) => collator.compare(a.name, b.name));
    const ys = done.map((r) => r.metric);
    const names = done.map((r) => pt(r.name));

    // parallel coordinates: each parameter, then the metric
    const par = $('plot-parallel');
    if (!done.length) note(par, 'No trial has reported ' + metric + ' yet.');
    else {
      if (par.firstChild && par.firstChild.className === 'empty') par.textContent = '';
      const dims = params.map((p) => {
        const vals = done.map((r) => (r.params || {})[p]);
        if (numeric(vals)) {
          if (logScale(vals)) {
            const lo = Math.floor(Math.log10(Math.min(...vals))), hi = Math.ceil(Math.log10(Math.max(...vals)));
            const ticks = []; for (let e = lo; e <= hi; e++) ticks.push(e);
            return {label: pt(p), values: vals.map(Math.log10), range: [lo, hi], tickvals: ticks, ticktext: ticks.map((e) => '1e' + e)};
          }
          return {label: pt(p), values: vals};
        }
        const cats = Array.from(new Set(vals.map(fmtParam))).sort(collator.compare);
        return {label: pt(p), values: vals.map((v) => cats.indexOf(fmtParam(v))), tickvals: cats.map((_, i) => i), ticktext: cats.map(pt)};
      });
      dims.push({label: pt(metric), values: ys});
      await Plotly.react(par, [{type: 'parcoords', dimensions: dims,
        line: {color: ys, colorscale, reversescale: reverse, showscale: true, colorbar: {title: {text: pt(metric)}}}}],
      {title: {text: 'Parameters → ' + pt(metric), y: 0.98}, margin: {l: 60, r: 80, t: 100, b: 30}}, CONFIG);
    }

    const t2 = performance.now();
    performance.measure('kubesweep:parallel', {start: t1, end: t2});
    // the metric against each parameter
    const box = $('plot-scatter');
    const have = new Map(Array.from(box.children).map((d) => [d.dataset.param, d]));
    for (const [p, d] of have) if (!params.includes(p)) { purge(d); d.remove(); }
    for (const p of params) {
      let div = have.get(p);
      if (!div) { div = el('div'); div.dataset.param = p; box.append(div); }
      if (!done.length) { note(div, 'No ' + metric + ' yet.'); continue; }
      if (div.firstChild && div.firstChild.className === 'empty') div.textContent = '';
      const xs = done.map((r) => (r.params || {})[p]);
      const num = numeric(xs);
      await Plotly.react(div, [{type: done.length > 1000 ? 'scattergl' : 'scatter', mode: 'markers',
        x: num ? xs : xs.map((v) => pt(fmtParam(v))), y: ys, text: names,
        hovertemplate: '%{text}<br>' + pt(p).replace(/%/g, '%%') + ' = %{x}<br>' + pt(metric).replace(/%/g, '%%') + ' = %{y}<extra></extra>',
        marker: {color: ys, colorscale, reversescale: reverse, size: 7, opacity: 0.8}}],
      {margin: {l: 60, r: 20, t: 30, b: 50},  // the axes' titles say what it is
        xaxis: {title: {text: pt(p)}, type: num ? (logScale(xs) ? 'log' : 'linear') : 'category'},
        yaxis: {title: {text: pt(metric)}}}, CONFIG);
    }

    const t3 = performance.now();
    performance.measure('kubesweep:scatter', {start: t2, end: t3});
    // learning curves: one trace, trials separated by gaps (2,000 traces would crawl)
    if (exp.curvesStale && Date.now() - exp.curvesAt > CURVES_REFRESH_MS) {
      try {
        const got = await api(expPath(exp.name) + '/curves');
        exp.curves = got.curves || {};
        exp.curvesAt = Date.now();
        exp.curvesStale = false;
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 404)) throw err;
      }
      if (exp.curvesStale) schedulePlots();
    }
    const cur = $('plot-curves');
    const keys = Object.keys(exp.curves).sort(collator.compare);
    if (!keys.some((k) => exp.curves[k].length)) note(cur, 'No learning curves yet (the trainer prints ' + metric + ' per step).');
    else {
      if (cur.firstChild && cur.firstChild.className === 'empty') cur.textContent = '';
      const x = [], y = [], text = [];
      for (const k of keys) {
        const label = pt(k);
        for (const [s, v] of exp.curves[k]) { x.push(s); y.push(v); text.push(label); }
        x.push(null); y.push(null); text.push('');
      }
      const traces = [{type: keys.length > 200 ? 'scattergl' : 'scatter', mode: 'lines', name: 'trials', x, y, text,
        connectgaps: false, line: {width: 1, color: 'rgba(9,105,218,0.45)'},
        hovertemplate: '%{text}<br>step %{x}: %{y}<extra></extra>'}];
      const best = sum.best && exp.curves[sum.best.trial];
      if (best && best.length) {
        traces.push({type: 'scatter', mode: 'lines', name: 'best: ' + pt(sum.best.trial), x: best.map((p) => p[0]),
          y: best.map((p) => p[1]), line: {width: 3, color: '#cf222e'}});
      }
      await Plotly.react(cur, traces, {title: {text: 'Learning curves: ' + pt(metric)}, margin: MARGIN,
        xaxis: {title: {text: 'step'}}, yaxis: {title: {text: pt(metric)}}, showlegend: true,
        legend: {orientation: 'h', y: -0.2}}, CONFIG);
    }
    performance.measure('kubesweep:curves', {start: t3, end: performance.now()});
    exp.plotMs = performance.now() - t1;
    exp.plotsShown = true;
  }

  // ---- actions -----------------------------------------------------------------------------
  function disarmCancel() {
    clearTimeout(exp.cancelArmed);
    exp.cancelArmed = null;
    const b = $('btn-cancel');
    b.classList.remove('armed');
    b.textContent = 'Cancel';
  }

  async function onCancel() {
    const b = $('btn-cancel');
    if (exp.cancelArmed === null) {  // the first click asks, the second cancels
      b.classList.add('armed');
      b.textContent = 'Cancel every unfinished trial?';
      exp.cancelArmed = setTimeout(disarmCancel, 5000);
      return;
    }
    disarmCancel();
    b.disabled = true;
    try {
      const got = await api(expPath(exp.name) + '/cancel', {method: 'POST'});
      say(`${exp.name}: ${got && got.cancelled !== undefined ? got.cancelled : 'its'} unfinished trials cancelled`, true);
      await loadExperiment(exp.name);
    } catch (err) { fail(err); } finally { renderSummary(); }
  }

  async function onRetry() {
    const b = $('btn-retry');
    b.disabled = true;
    try {
      await api(expPath(exp.name) + '/retry', {method: 'POST'});
      say(`${exp.name}: its failed and cancelled trials run again`, true);
    } catch (err) { fail(err); } finally { renderSummary(); }
  }

  async function onTensorBoard() {
    // a window opened in the click itself is not a blocked pop-up; it goes to TensorBoard once up
    const w = window.open('', '_blank');
    const b = $('btn-tensorboard');
    b.disabled = true;
    const label = b.textContent;
    b.textContent = 'TensorBoard starting…';
    try {
      const got = await api(expPath(exp.name) + '/tensorboard', {method: 'POST'});
      const url = new URL(got.url, window.location.href).href;  // a path on this server
      if (w) { w.opener = null; w.location.href = url; } else say('TensorBoard: ' + url, true);
    } catch (err) { if (w) w.close(); fail(err); } finally { b.disabled = false; b.textContent = label; }
  }

  // ---- a trial's log -----------------------------------------------------------------------
  let logAbort = null;

  function stopLog() { if (logAbort) { logAbort.abort(); logAbort = null; } }

  async function showLog(name, trial) {
    show('view-log');
    crumbs([[name, '#/e/' + enc(name)], [trial, null]]);
    follow(name);
    if (exp.name !== name) {  // else the experiment's rows stay live for the way back
      exp.name = null;
      onEvent = () => {};
      onResync = () => {};
    }
    setText($('log-title'), trial);
    const pre = $('log');
    pre.textContent = '';
    const state = $('log-state');
    const ctl = new AbortController();
    logAbort = ctl;
    const q = new URLSearchParams({follow: '1', tail: '5000'});
    setText(state, 'reading…');
    try {
      const r = await fetch(expPath(name) + '/trials/' + enc(trial) + '/log?' + q, {headers: authHeaders(), signal: ctl.signal});
      if (!r.ok) {
        let body = null;
        try { body = await r.json(); } catch (e) { /* text */ }
        throw new ApiError(r.status, detailText(body, r.status));
      }
      setText(state, 'following');
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let kept = 0;
      for (;;) {
        const {done, value} = await reader.read();
        const text = done ? dec.decode() : dec.decode(value, {stream: true});
        if (text) {
          pre.append(document.createTextNode(text));
          kept += text.length;
          while (kept > LOG_KEEP && pre.firstChild) { kept -= pre.firstChild.textContent.length; pre.firstChild.remove(); }
          if ($('log-follow').checked) pre.scrollTop = pre.scrollHeight;
        }
        if (done) break;
      }
      setText(state, 'ended');
    } catch (err) {
      if (ctl.signal.aborted) return;
      setText(state, '');
      fail(err);
    }
  }

  // ---- routing -----------------------------------------------------------------------------
  function show(id) {
    for (const v of ['view-list', 'view-exp', 'view-log']) $(v).hidden = v !== id;
    document.body.dataset.view = id;
  }

  function crumbs(parts) {
    const nav = $('crumbs');
    nav.textContent = '';
    for (const [text, href] of parts) {
      const s = el('span');
      s.append(href ? link(href, text) : document.createTextNode(text));
      nav.append(s);
    }
  }

  // performance marks the tests and bench/serve_page.py read: the time from navigation start
  function mark(what) {
    performance.mark('kubesweep:' + what);
    window.kubesweepRendered = Object.assign(window.kubesweepRendered || {}, {[what]: performance.now()});
  }

  async function route() {
    takeToken();
    stopLog();
    hush();
    const h = location.hash.replace(/^#\/?/, '');
    const parts = h ? h.split('/').map(decodeURIComponent) : [];
    try {
      if (parts[0] === 'e' && parts[1]) {
        if (parts[2] === 't' && parts[3]) await showLog(parts[1], parts[3]);
        else await showExperiment(parts[1], parts[2] === 'plots' ? 'plots' : 'trials');
      } else {
        exp.name = null;
        await showList();
      }
    } catch (err) { fail(err); }
  }

  // ---- wiring (no inline handlers: the page's policy allows no inline script) ------------
  $('trials').tHead.addEventListener('click', (e) => {
    const th = e.target.closest('th');
    if (!th || !th.dataset.key) return;
    exp.sort = {key: th.dataset.key, dir: exp.sort.key === th.dataset.key ? -exp.sort.dir : 1};
    headerRow();
    arrange();
  });
  $('trials').tHead.addEventListener('keydown', (e) => { if (e.key === 'Enter') e.target.click(); });
  let filterTimer = null;
  $('filter').addEventListener('input', () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => { exp.filter = $('filter').value.trim().toLowerCase(); arrange(); }, 150);
  });
  for (const b of document.querySelectorAll('.tab')) {
    b.addEventListener('click', () => {
      location.hash = '#/e/' + enc(exp.name) + (b.dataset.tab === 'plots' ? '/plots' : '');
    });
  }
  $('btn-cancel').addEventListener('click', () => { onCancel(); });
  $('btn-retry').addEventListener('click', () => { onRetry(); });
  $('btn-tensorboard').addEventListener('click', () => { onTensorBoard(); });
  $('log-follow').addEventListener('change', () => { if ($('log-follow').checked) $('log').scrollTop = $('log').scrollHeight; });
  // running trials' durations tick
  setInterval(() => {
    if (document.body.dataset.view !== 'view-exp' || exp.tab !== 'trials') return;
    const i = exp.columns.findIndex((c) => c.key === 'duration');
    if (i < 0) return;
    for (const r of exp.rows.values()) {
      if (r.state !== 'running' || r.end) continue;
      const tr = exp.trs.get(r.name);
      if (tr) setText(tr.cells[i], fmtDuration(seconds(r)));
    }
  }, 1000);
  window.addEventListener('hashchange', route);
  route();
})();
