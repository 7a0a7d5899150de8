// Backdrop playground: a client of the public native API, nothing else.
//
// Every call sends the key typed in the page as `Authorization: Bearer`. Task events are
// read with a streaming fetch, because an EventSource cannot send that header. Data
// from the server is only ever put into the page as text, never as HTML.
'use strict';

(() => {
  const $ = (selector, root = document) => root.querySelector(selector);
  const KEY_STORAGE = 'backdrop.apiKey';
  const MAX_RATIO = 2;
  const MAX_AREA = 3;
  const SIDES = ['up', 'down', 'left', 'right'];

  const state = {
    mode: 'background',
    files: { background: null, expand: null },
    urls: { background: null, expand: null },
    sizes: { background: null, expand: null },
    ratios: { up: 0, down: 0, left: 0, right: 0 },
    stage: { scale: 1, x: 0, y: 0, dragging: null },
    run: null, // { id, controller, before }
  };

  // ---- API ------------------------------------------------------------------------

  /** An error as the API reports it: a stable code and one sentence. */
  class ApiError extends Error {
    constructor(code, message, status) {
      super(message);
      this.code = code;
      this.status = status;
    }
  }

  const apiKey = () => $('#api-key').value.trim();

  async function api(path, options = {}) {
    const headers = new Headers(options.headers || {});
    if (apiKey()) headers.set('Authorization', `Bearer ${apiKey()}`);
    let response;
    try {
      response = await fetch(path, { ...options, headers });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new ApiError('network_error', `The server could not be reached (${e.message}).`, 0);
    }
    if (!response.ok) throw await errorOf(response);
    return response;
  }

  async function errorOf(response) {
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      // Not JSON: a proxy or a crash; the status says what we know.
    }
    const code = (body && body.code) || `http_${response.status}`;
    const message = (body && body.message) || response.statusText || 'The request failed.';
    return new ApiError(code, message, response.status);
  }

  /** Shows an error as its message and code, in `box` (the run's by default). */
  function showError(error, box = $('#run-error')) {
    box.replaceChildren();
    const message = document.createElement('span');
    message.className = 'message';
    message.textContent = error.message;
    const code = document.createElement('code');
    code.className = 'code';
    code.textContent = error.code || 'error';
    box.append(message, code);
    box.hidden = false;
  }

  function clearError() {
    $('#run-error').hidden = true;
    $('#run-error').replaceChildren();
  }

  // ---- The key ----------------------------------------------------------------------

  async function useKey() {
    const status = $('#key-status');
    const key = apiKey();
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
    status.className = 'key-status';
    if (!key) {
      status.textContent = 'No key: make one with `backdrop keys create`.';
      return;
    }
    status.textContent = 'Checking the key…';
    try {
      const account = await (await api('v1/account')).json();
      const balance = account.balance === null || account.balance === undefined
        ? 'unmetered' : `${account.balance} credits`;
      status.textContent = `Key "${account.key.name}" (${account.key.prefix}…) · ${balance}`;
      status.classList.add('ok');
      await Promise.all([loadModels(), loadHistory()]);
    } catch (error) {
      status.textContent = `${error.message} (${error.code})`;
      status.classList.add('bad');
    }
  }

  async function loadModels() {
    const listing = await (await api('v1/models')).json();
    for (const id of ['#bg-engine', '#ex-engine']) {
      const select = $(id);
      const chosen = select.value;
      select.replaceChildren(new Option('auto', ''));
      for (const engine of listing.engines || []) select.add(new Option(engine, engine));
      select.value = chosen;
    }
    const model = $('#bg-model');
    const chosen = model.value;
    model.replaceChildren(new Option('default', ''));
    for (const m of listing.models || []) {
      model.add(new Option(m.description ? `${m.id} — ${m.description}` : m.id, m.id));
    }
    model.value = chosen;
    model.disabled = !(listing.models || []).length;
  }

  // ---- Scenes -----------------------------------------------------------------------

  async function loadScenes() {
    const list = $('#scene-list');
    const { scenes } = await (await api('v1/scenes')).json();
    const card = (id, name, title, thumbnail) => {
      const label = document.createElement('label');
      label.className = 'scene';
      label.title = title;
      label.dataset.scene = id || 'auto';
      const input = document.createElement('input');
      input.type = 'radio';
      input.name = 'scene';
      input.value = id;
      input.checked = id === '';
      const body = document.createElement('span');
      body.className = 'scene-card';
      if (thumbnail) {
        const img = document.createElement('img');
        img.src = thumbnail.replace(/^\//, '');
        img.alt = '';
        body.append(img);
      } else {
        const auto = document.createElement('span');
        auto.className = 'auto';
        auto.textContent = 'Aa';
        body.append(auto);
      }
      body.append(document.createTextNode(name));
      label.append(input, body);
      return label;
    };
    list.replaceChildren(card('', 'From prompt', 'Let the prompt pick the scene', null));
    for (const s of scenes) list.append(card(s.id, s.name, s.description, s.thumbnail_url));
  }

  // ---- Files ------------------------------------------------------------------------

  function setFile(mode, file) {
    if (state.urls[mode]) URL.revokeObjectURL(state.urls[mode]);
    state.files[mode] = file;
    state.urls[mode] = file ? URL.createObjectURL(file) : null;
    state.sizes[mode] = null;
    const name = $(mode === 'background' ? '#bg-name' : '#ex-name');
    name.textContent = file ? `${file.name} · ${Math.ceil(file.size / 1024)} KiB` : '';
    if (!file) return;
    const probe = new Image();
    probe.onload = () => {
      state.sizes[mode] = { w: probe.naturalWidth, h: probe.naturalHeight };
      name.textContent = `${file.name} · ${probe.naturalWidth} × ${probe.naturalHeight} px`;
      if (mode === 'background') {
        const preview = $('#bg-preview');
        preview.src = state.urls[mode];
        preview.hidden = false;
      } else {
        $('#ex-photo').src = state.urls[mode];
        showStage();
      }
    };
    probe.onerror = () => {
      name.textContent = `${file.name}: the browser cannot show this file; the server will judge it.`;
      if (mode === 'background') $('#bg-preview').hidden = true;
      else showStage();
    };
    probe.src = state.urls[mode];
  }

  function wireDrop(mode, zone) {
    const over = (on) => (event) => {
      event.preventDefault();
      zone.classList.toggle('over', on);
    };
    zone.addEventListener('dragenter', over(true));
    zone.addEventListener('dragover', over(true));
    zone.addEventListener('dragleave', over(false));
    zone.addEventListener('drop', (event) => {
      over(false)(event);
      const file = event.dataTransfer.files[0];
      if (file) setFile(mode, file);
    });
  }

  // ---- Expansion frame --------------------------------------------------------------

  /** Pixels of each new strip and the canvas, rounded as the server rounds them. */
  function expansionPixels(size, r) {
    const strip = (ratio, side) => Math.round(ratio * side);
    const px = { up: strip(r.up, size.h), down: strip(r.down, size.h), left: strip(r.left, size.w), right: strip(r.right, size.w) };
    px.width = px.left + size.w + px.right;
    px.height = px.up + size.h + px.down;
    return px;
  }

  /** The largest ratio `side` may take with the others as they are (area at most 3x). */
  function maxRatio(side) {
    const r = state.ratios;
    const across = side === 'up' || side === 'down' ? 1 + r.left + r.right : 1 + r.up + r.down;
    const along = side === 'up' || side === 'down' ? r.up + r.down - r[side] : r.left + r.right - r[side];
    return Math.max(0, Math.min(MAX_RATIO, Math.floor((MAX_AREA / across - 1 - along) * 100 + 1e-6) / 100));
  }

  function setRatio(side, value) {
    const clean = Number.isFinite(value) ? value : 0;
    state.ratios[side] = Math.round(Math.max(0, Math.min(maxRatio(side), clean)) * 100) / 100;
    drawStage();
  }

  function showStage() {
    const size = state.sizes.expand;
    $('#ex-empty').hidden = !!size;
    $('#ex-frame').hidden = !size;
    if (!size && state.files.expand) $('#ex-empty').textContent = 'No preview for this file.';
    drawStage();
  }

  function drawStage() {
    for (const side of SIDES) {
      const input = $(`#ex-${side}`);
      if (document.activeElement !== input) input.value = state.ratios[side];
      const handle = $(`.handle.${side}`);
      handle.setAttribute('aria-valuenow', state.ratios[side]);
      handle.setAttribute('aria-valuemax', maxRatio(side));
      handle.setAttribute('aria-valuetext', `${Math.round(state.ratios[side] * 100)}% of the ${side === 'up' || side === 'down' ? 'height' : 'width'}`);
    }
    const size = state.sizes.expand;
    const readout = $('#ex-size');
    const r = state.ratios;
    if (!size) {
      readout.textContent = state.files.expand ? 'Result size: unknown until the server reads the file.' : 'Result size appears here.';
      return;
    }
    const px = expansionPixels(size, r);
    const area = (1 + r.left + r.right) * (1 + r.up + r.down);
    readout.replaceChildren(
      'Result ', Object.assign(document.createElement('strong'), { id: 'ex-result-size', textContent: `${px.width} × ${px.height} px` }),
      ` from ${size.w} × ${size.h} · ${area.toFixed(2)}× the area (at most ${MAX_AREA}×)`,
    );

    const stage = $('#ex-stage');
    const s = state.stage;
    if (!s.dragging) {
      // Fit the frame with room around it to drag into; the scale holds still while dragging.
      const pad = 28;
      const roomW = size.w * (1 + r.left + r.right + 0.6);
      const roomH = size.h * (1 + r.up + r.down + 0.6);
      s.scale = Math.min((stage.clientWidth - 2 * pad) / roomW, (stage.clientHeight - 2 * pad) / roomH);
      const frameW = size.w * (1 + r.left + r.right) * s.scale;
      const frameH = size.h * (1 + r.up + r.down) * s.scale;
      s.x = (stage.clientWidth - frameW) / 2 + r.left * size.w * s.scale;
      s.y = (stage.clientHeight - frameH) / 2 + r.up * size.h * s.scale;
    }
    const w = size.w * s.scale;
    const h = size.h * s.scale;
    const frame = $('#ex-frame');
    const left = s.x - r.left * w;
    const top = s.y - r.up * h;
    Object.assign(frame.style, {
      left: `${left}px`, top: `${top}px`,
      width: `${w * (1 + r.left + r.right)}px`, height: `${h * (1 + r.up + r.down)}px`,
    });
    Object.assign($('#ex-photo').style, {
      left: `${s.x - left - 2}px`, top: `${s.y - top - 2}px`, width: `${w}px`, height: `${h}px`,
    });
  }

  function wireStage() {
    const stage = $('#ex-stage');
    for (const handle of stage.querySelectorAll('.handle')) {
      const side = handle.dataset.side;
      handle.addEventListener('pointerdown', (event) => {
        event.preventDefault();
        handle.setPointerCapture(event.pointerId);
        handle.focus();
        state.stage.dragging = side;
      });
      handle.addEventListener('pointermove', (event) => {
        if (state.stage.dragging !== side || !state.sizes.expand) return;
        const box = stage.getBoundingClientRect();
        const x = event.clientX - box.left;
        const y = event.clientY - box.top;
        const { scale, x: px, y: py } = state.stage;
        const w = state.sizes.expand.w * scale;
        const h = state.sizes.expand.h * scale;
        const value = {
          left: (px - x) / w, right: (x - px - w) / w, up: (py - y) / h, down: (y - py - h) / h,
        }[side];
        setRatio(side, value);
      });
      const end = () => {
        if (state.stage.dragging !== side) return;
        state.stage.dragging = null;
        drawStage();
      };
      handle.addEventListener('pointerup', end);
      handle.addEventListener('pointercancel', end);
      handle.addEventListener('keydown', (event) => {
        const step = event.shiftKey ? 0.25 : 0.05;
        const now = state.ratios[side];
        const next = {
          ArrowUp: now + step, ArrowRight: now + step, ArrowDown: now - step, ArrowLeft: now - step,
          PageUp: now + 0.25, PageDown: now - 0.25, Home: 0, End: MAX_RATIO,
        }[event.key];
        if (next === undefined) return;
        event.preventDefault();
        setRatio(side, next);
      });
    }
    for (const side of SIDES) {
      $(`#ex-${side}`).addEventListener('change', (event) => setRatio(side, parseFloat(event.target.value)));
    }
    new ResizeObserver(() => drawStage()).observe(stage);
  }

  // ---- Modes ------------------------------------------------------------------------

  function setMode(mode, focus = false) {
    state.mode = mode;
    for (const [name, tab, panel] of [['background', '#tab-background', '#panel-background'], ['expand', '#tab-expand', '#panel-expand']]) {
      const on = name === mode;
      $(tab).setAttribute('aria-selected', String(on));
      $(tab).tabIndex = on ? 0 : -1;
      $(panel).hidden = !on;
      if (on && focus) $(tab).focus();
    }
    if (mode === 'expand') drawStage();
  }

  function wireTabs() {
    $('#tab-background').addEventListener('click', () => setMode('background'));
    $('#tab-expand').addEventListener('click', () => setMode('expand'));
    $('.tabs').addEventListener('keydown', (event) => {
      if (!['ArrowLeft', 'ArrowRight', 'Home', 'End'].includes(event.key)) return;
      event.preventDefault();
      const next = event.key === 'Home' ? 'background' : event.key === 'End' ? 'expand'
        : state.mode === 'background' ? 'expand' : 'background';
      setMode(next, true);
    });
  }

  // ---- Submitting and following a task -------------------------------------------

  function appendIf(form, name, value) {
    const text = String(value ?? '').trim();
    if (text !== '') form.append(name, text);
  }

  function backgroundRequest() {
    const form = new FormData();
    if (state.files.background) form.append('image', state.files.background, state.files.background.name);
    appendIf(form, 'prompt', $('#bg-prompt').value);
    const scene = $('input[name=scene]:checked');
    appendIf(form, 'scene', scene ? scene.value : '');
    appendIf(form, 'negative_prompt', $('#bg-negative').value);
    appendIf(form, 'n', $('#bg-n').value);
    appendIf(form, 'seed', $('#bg-seed').value);
    appendIf(form, 'width', $('#bg-width').value);
    appendIf(form, 'height', $('#bg-height').value);
    appendIf(form, 'engine', $('#bg-engine').value);
    appendIf(form, 'model', $('#bg-model').disabled ? '' : $('#bg-model').value);
    appendIf(form, 'steps', $('#bg-steps').value);
    const size = state.sizes.background;
    return { path: 'v1/backgrounds', form, before: state.urls.background && { kind: 'background', url: state.urls.background, size } };
  }

  function expansionRequest() {
    const form = new FormData();
    if (state.files.expand) form.append('image', state.files.expand, state.files.expand.name);
    for (const side of SIDES) form.append(side, String(state.ratios[side]));
    appendIf(form, 'prompt', $('#ex-prompt').value);
    appendIf(form, 'n', $('#ex-n').value);
    appendIf(form, 'seed', $('#ex-seed').value);
    appendIf(form, 'engine', $('#ex-engine').value);
    const size = state.sizes.expand;
    return {
      path: 'v1/expansions', form,
      before: state.urls.expand && size && { kind: 'expansion', url: state.urls.expand, size, ratios: { ...state.ratios } },
    };
  }

  async function generate() {
    if (state.run) return;
    clearError();
    const request = state.mode === 'background' ? backgroundRequest() : expansionRequest();
    const run = { id: null, controller: new AbortController(), before: request.before, mode: state.mode };
    state.run = run;
    setBusy(true);
    setStatus('Sending…', 0);
    $('#results').replaceChildren();
    try {
      const accepted = await (await api(request.path, { method: 'POST', body: request.form, signal: run.controller.signal })).json();
      run.id = accepted.id;
      $('#cancel').disabled = false;
      setStatus(`Task ${accepted.id} is ${accepted.state}.`, 0);
      loadHistory().catch(() => {});
      const view = await follow(run);
      if (view) showTask(view, run.before);
    } catch (error) {
      if (error.name !== 'AbortError') {
        showError(error);
        setStatus('Not started.', 0);
      }
    } finally {
      state.run = null;
      setBusy(false);
      loadHistory().catch(() => {});
    }
  }

  /** Follows a task's server-sent events until it ends; returns its last view. */
  async function follow(run) {
    const response = await api(`v1/tasks/${encodeURIComponent(run.id)}/events`, {
      headers: { Accept: 'text/event-stream' }, signal: run.controller.signal,
    });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    let last = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n?/g, '\n');
      let cut;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        const event = parseEvent(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
        if (!event.data) continue;
        last = JSON.parse(event.data);
        showProgress(last);
        if (event.type === 'done') {
          reader.cancel().catch(() => {});
          return last;
        }
      }
    }
    // The stream ended early (a proxy timeout, a restart): ask once.
    return (await api(`v1/tasks/${encodeURIComponent(run.id)}`, { signal: run.controller.signal })).json();
  }

  function parseEvent(block) {
    const event = { type: 'message', data: '' };
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'event') event.type = value;
      else if (field === 'data') data.push(value);
    }
    event.data = data.join('\n');
    return event;
  }

  function showProgress(view) {
    const p = view.progress || { percent: 0, step: 0, steps: 0 };
    if (view.state === 'queued') {
      const ahead = view.queue_position;
      const where = ahead === null || ahead === undefined ? '' : ahead === 0 ? ' · next in line' : ` · ${ahead} ahead`;
      setStatus(`Queued${where}.`, 0, 'queued');
    } else if (view.state === 'running') {
      const step = p.steps ? ` · step ${p.step} of ${p.steps}` : '';
      setStatus(`Running on ${view.engine}${step} · ${p.percent}%`, p.percent, 'running');
    } else {
      setStatus(`${view.state[0].toUpperCase()}${view.state.slice(1)}.`, view.state === 'succeeded' ? 100 : p.percent, view.state);
    }
  }

  function setStatus(text, percent, stateName) {
    const status = $('#run-status');
    status.textContent = text;
    status.dataset.state = stateName || '';
    $('#run-progress').value = percent;
  }

  function setBusy(busy) {
    $('#generate').disabled = busy;
    $('#cancel').disabled = !busy || !(state.run && state.run.id);
  }

  async function cancel() {
    const run = state.run;
    if (!run || !run.id) return;
    $('#cancel').disabled = true;
    try {
      const view = await (await api(`v1/tasks/${encodeURIComponent(run.id)}`, { method: 'DELETE' })).json();
      showProgress(view);
    } catch (error) {
      showError(error);
    }
  }

  // ---- Results ----------------------------------------------------------------------

  /** Shows a finished task: its images, or its error. `before` is the input, if known. */
  function showTask(view, before) {
    showProgress(view);
    const results = $('#results');
    results.replaceChildren();
    // A cancel is the user's own doing: the status line says so, not an error box.
    if (view.error && view.state !== 'canceled') showError(view.error);
    else clearError();
    if (view.state === 'succeeded') {
      const took = view.finished_at && view.started_at ? ` in ${((view.finished_at - view.started_at) / 1000).toFixed(1)} s` : '';
      setStatus(`Done${took}: ${view.images.length} image${view.images.length === 1 ? '' : 's'}, ${view.width} × ${view.height} px, ${view.engine}.`, 100, 'succeeded');
    }
    if (view.expired) setStatus('These results have expired.', 100, view.state);
    for (const image of view.images || []) {
      if (image.url) results.append(resultCard(view, image, before));
    }
  }

  function resultCard(view, image, before) {
    const figure = document.createElement('figure');
    figure.className = 'result';
    const compare = document.createElement('div');
    compare.className = 'compare checker';
    const after = document.createElement('img');
    after.className = 'after';
    after.src = image.url;
    after.alt = `Result ${image.index} of task ${view.id}, seed ${image.seed}`;
    if (view.width && view.height) {
      after.width = view.width;
      after.height = view.height;
    }
    compare.append(after);
    if (before) compare.append(...beforeLayer(view, before));
    const caption = document.createElement('figcaption');
    const seed = document.createElement('span');
    seed.className = 'seed';
    seed.textContent = `Seed ${image.seed}`;
    const reuse = document.createElement('button');
    reuse.type = 'button';
    reuse.className = 'secondary small use-seed';
    reuse.textContent = 'Use this seed';
    reuse.addEventListener('click', () => useSeed(view.kind, image.seed));
    const download = document.createElement('a');
    download.className = 'button-link';
    download.href = image.url;
    download.download = `backdrop-${view.id}-${image.index}.${(image.url.split('?')[0].split('.').pop() || 'png')}`;
    download.textContent = 'Download';
    caption.append(seed, reuse, download);
    figure.append(compare, caption);
    return figure;
  }

  /** The input drawn where it sits in the result, clipped by a slider. */
  function beforeLayer(view, before) {
    const layer = document.createElement('div');
    layer.className = 'before checker';
    const img = document.createElement('img');
    img.src = before.url;
    img.alt = '';
    if (before.kind === 'expansion' && view.width && view.height) {
      const px = expansionPixels(before.size, before.ratios);
      Object.assign(img.style, {
        left: `${(px.left / px.width) * 100}%`, top: `${(px.up / px.height) * 100}%`,
        width: `${(before.size.w / px.width) * 100}%`, height: `${(before.size.h / px.height) * 100}%`,
      });
    } else {
      layer.classList.add('fill');
    }
    layer.append(img);
    const divider = document.createElement('span');
    divider.className = 'divider';
    const tagBefore = Object.assign(document.createElement('span'), { className: 'tag b', textContent: 'Before' });
    const tagAfter = Object.assign(document.createElement('span'), { className: 'tag a', textContent: 'After' });
    const slider = document.createElement('input');
    slider.type = 'range';
    slider.min = '0';
    slider.max = '100';
    slider.value = '50';
    slider.setAttribute('aria-label', 'Compare with the input: slide to show more of it');
    slider.addEventListener('input', () => {
      slider.parentElement.style.setProperty('--split', `${slider.value}%`);
    });
    return [layer, divider, tagBefore, tagAfter, slider];
  }

  function useSeed(kind, seed) {
    const mode = kind === 'expansion' ? 'expand' : 'background';
    setMode(mode);
    const field = $(mode === 'expand' ? '#ex-seed' : '#bg-seed');
    if (mode === 'background') $('#panel-background details').open = true;
    field.value = seed;
    field.focus();
  }

  // ---- History ----------------------------------------------------------------------

  async function loadHistory() {
    if (!apiKey()) return;
    const { tasks } = await (await api('v1/tasks?limit=24')).json();
    const list = $('#history');
    list.replaceChildren();
    $('#history-empty').hidden = tasks.length > 0;
    for (const view of tasks) {
      const item = document.createElement('li');
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'history-item';
      button.dataset.task = view.id;
      const first = (view.images || [])[0];
      const src = first && (first.preview_url || first.url);
      if (src) {
        const img = document.createElement('img');
        img.className = 'thumb';
        img.src = src;
        img.alt = '';
        button.append(img);
      } else {
        const none = document.createElement('span');
        none.className = 'thumb checker-dim';
        none.textContent = view.expired ? 'expired' : view.state;
        button.append(none);
      }
      const line = document.createElement('span');
      line.className = 'line';
      const kind = document.createElement('span');
      kind.textContent = view.kind === 'expansion' ? 'Expand' : 'Background';
      const stateName = document.createElement('span');
      stateName.className = `state ${view.state}`;
      stateName.textContent = view.state;
      line.append(kind, stateName);
      const when = document.createElement('span');
      when.className = 'line muted';
      when.textContent = `${new Date(view.created_at).toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'short' })} · ${view.n} image${view.n === 1 ? '' : 's'}`;
      button.append(line, when);
      if (view.error) {
        const err = document.createElement('span');
        err.className = 'err';
        err.textContent = `${view.error.message} (${view.error.code})`;
        button.append(err);
      }
      button.setAttribute('aria-label', `${kind.textContent} task ${view.id}, ${view.state}: show it`);
      button.addEventListener('click', () => showTask(view, null));
      item.append(button);
      list.append(item);
    }
  }

  // ---- Start ------------------------------------------------------------------------

  function start() {
    wireTabs();
    for (const [mode, input] of [['background', $('#bg-file')], ['expand', $('#ex-file')]]) {
      input.addEventListener('change', () => setFile(mode, input.files[0] || null));
    }
    wireDrop('background', $('#bg-drop'));
    wireDrop('expand', $('#ex-drop'));
    wireDrop('expand', $('#ex-stage'));
    wireStage();
    $('#key-form').addEventListener('submit', (event) => {
      event.preventDefault();
      useKey();
    });
    $('#api-key').addEventListener('change', () => useKey());
    for (const form of ['#panel-background', '#panel-expand']) {
      $(form).addEventListener('submit', (event) => {
        event.preventDefault();
        generate();
      });
    }
    $('#generate').addEventListener('click', generate);
    $('#cancel').addEventListener('click', cancel);
    $('#history-refresh').addEventListener('click', () => loadHistory().catch((e) => showError(e)));
    loadScenes().catch((error) => showError(error));
    const saved = localStorage.getItem(KEY_STORAGE);
    if (saved) {
      $('#api-key').value = saved;
      useKey();
    }
    drawStage();
  }

  start();
})();
