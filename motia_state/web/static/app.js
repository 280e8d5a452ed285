// motia-state workbench: plain JavaScript, no build step, no network beyond this server.
// Every request goes to the JSON endpoints beside this page (relative to <base>).
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const pretty = (v) => JSON.stringify(v, null, 2);
const compact = (v) => JSON.stringify(v);
function typeOf(v) {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v === "object" ? "object" : typeof v;
}
function preview(v) {
  const text = compact(v);
  return text.length > 120 ? text.slice(0, 117) + "…" : text;
}
function when(ms) {
  if (typeof ms !== "number") return "";
  const d = new Date(ms);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}
function parseLoose(text) {
  // Filter values: JSON when it parses, else the text as a string.
  try { return JSON.parse(text); } catch { return text; }
}

// -- the API ------------------------------------------------------------------------

async function api(method, path, body) {
  const options = { method, headers: {}, credentials: "same-origin" };
  if (method !== "GET") {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body === undefined ? {} : body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch (e) {
    return { status: 0, ok: false, body: { error: "the server cannot be reached", code: "UNAVAILABLE" }, headers: new Headers() };
  }
  if (response.status === 401) askToken();
  let data = null;
  if (response.status !== 204) {
    const text = await response.text();
    try { data = text ? JSON.parse(text) : null; } catch { data = { error: text, code: "INTERNAL" }; }
  }
  return { status: response.status, ok: response.ok, body: data, headers: response.headers };
}
const errText = (r) => (r.body && r.body.code ? `${r.body.code}: ${r.body.error}` : `HTTP ${r.status}`);

// -- the token and the session cookie ------------------------------------------------

function askToken() {
  $("#token-prompt").hidden = false;
  $("#token-input").focus();
}
async function openSession(token) {
  const r = await api("POST", "session", { token });
  if (r.status === 204) {
    $("#token-prompt").hidden = true;
    return true;
  }
  $("#token-error").textContent = r.status === 401 ? "That is not the token." : errText(r);
  return false;
}

// -- tabs ------------------------------------------------------------------------------

function showTab(tab) {
  for (const t of $$('[role="tab"]')) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    $("#" + t.getAttribute("aria-controls")).hidden = !on;
  }
  if (tab.id === "tab-steps") loadSteps();
}
function setupTabs() {
  const tabs = $$('[role="tab"]');
  for (const tab of tabs) {
    tab.addEventListener("click", () => showTab(tab));
    tab.addEventListener("keydown", (e) => {
      const i = tabs.indexOf(tab);
      const next = e.key === "ArrowRight" ? tabs[(i + 1) % tabs.length] : e.key === "ArrowLeft" ? tabs[(i + tabs.length - 1) % tabs.length] : null;
      if (next) { e.preventDefault(); next.focus(); showTab(next); }
    });
  }
}

// -- the list --------------------------------------------------------------------------

const list = { rows: [], next: null, search: "", conditions: [], selected: null };

function filterParam() {
  if (!list.conditions.length) return null;
  return list.conditions.length === 1 ? list.conditions[0] : { all: list.conditions };
}
function listQuery() {
  const q = new URLSearchParams({ limit: "100" });
  if (list.search) q.set("search", list.search);
  const f = filterParam();
  if (f) q.set("filter", JSON.stringify(f));
  return "state?" + q.toString();
}
function nextLink(headers) {
  const link = headers.get("Link");
  const m = link && link.match(/<([^>]+)>;\s*rel="next"/);
  return m ? m[1] : null;
}

async function loadList(append = false) {
  const url = append ? list.next : listQuery();
  if (!url) return;
  const r = await api("GET", url);
  $("#list-error").textContent = r.ok ? "" : errText(r);
  $("#filter-error").textContent = !r.ok && r.body && r.body.code === "INVALID_ARGUMENT" ? r.body.error : "";
  if (!r.ok) return;
  list.rows = append ? list.rows.concat(r.body) : r.body;
  list.next = nextLink(r.headers);
  $("#changes-hint").hidden = true;
  renderList();
}

const rowId = (g, k) => JSON.stringify([g, k]);

function renderList() {
  const body = $("#rows");
  const rows = document.createDocumentFragment();
  let group = null;
  for (const entry of list.rows) {
    if (entry.groupId !== group) {
      group = entry.groupId;
      rows.append(el("tr", { class: "group-row" }, el("th", { colspan: "3", scope: "rowgroup", text: group })));
    }
    rows.append(entryRow(entry));
  }
  body.textContent = "";
  body.append(rows);
  const filtered = list.search || list.conditions.length;
  $("#empty").hidden = list.rows.length > 0;
  $("#empty").textContent = filtered ? "No entry matches the search or filter." : "The store is empty. Create an entry with “New entry”, or let a step write one.";
  $("#more").hidden = !list.next;
  $("#count").textContent = list.rows.length ? `${list.rows.length} shown${list.next ? ", more follow" : ""}` : "";
  const fc = $("#filter-count");
  fc.hidden = !list.conditions.length;
  fc.textContent = String(list.conditions.length);
}

function entryRow(entry) {
  const selected = list.selected && rowId(entry.groupId, entry.key) === rowId(list.selected.groupId, list.selected.key);
  const row = el("tr", {
    class: "entry", tabindex: "0", "data-id": rowId(entry.groupId, entry.key), "data-key": entry.key, "data-group": entry.groupId,
    "aria-selected": selected ? "true" : "false",
    onclick: () => selectEntry(entry.groupId, entry.key),
    onkeydown: (e) => rowKey(e, row),
  },
  el("td", { text: entry.key, title: entry.key }),
  el("td", {}, el("span", { class: "type " + entry.type, text: entry.type })),
  el("td", { class: "preview", text: preview(entry.value), title: preview(entry.value) }));
  return row;
}

function rowKey(e, row) {
  const rows = $$("tr.entry");
  const i = rows.indexOf(row);
  if (e.key === "Enter" || e.key === " ") { e.preventDefault(); row.click(); }
  else if (e.key === "ArrowDown" && rows[i + 1]) { e.preventDefault(); rows[i + 1].focus(); }
  else if (e.key === "ArrowUp" && rows[i - 1]) { e.preventDefault(); rows[i - 1].focus(); }
}

function findRow(g, k) {
  return $$("tr.entry").find((r) => r.dataset.id === rowId(g, k)) || null;
}
function flash(node) {
  node.classList.remove("flash");
  void node.offsetWidth; // restart the animation
  node.classList.add("flash");
}

// New rows are drawn once per frame, however many arrive: redrawn once per entry, the list
// freezes the page while a step creates entries in a loop.
let renderPending = false;
const flashIds = new Set();
function scheduleRender(id) {
  flashIds.add(id);
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => {
    renderPending = false;
    renderList();
    for (const row of $$("tr.entry")) if (flashIds.has(row.dataset.id)) flash(row);
    flashIds.clear();
  });
}

// Removed rows fade, then leave: one redraw for every removal of a burst.
let fadeTimer = null;
function fadeOut() {
  if (fadeTimer === null) fadeTimer = setTimeout(() => { fadeTimer = null; renderList(); }, 1200);
}

// A change from the stream: update the row in place, insert a new one where it sorts, or mark a removal.
function applyChange(change) {
  const g = change.group, k = change.key;
  const i = list.rows.findIndex((e) => e.groupId === g && e.key === k);
  if (change.event === "deleted") {
    if (i >= 0) {
      list.rows.splice(i, 1);
      const row = findRow(g, k);
      if (row) { row.classList.add("gone"); fadeOut(); }
    }
  } else if (i >= 0) {
    const entry = list.rows[i];
    entry.value = change.newValue;
    entry.type = typeOf(change.newValue);
    if (renderPending) {
      flashIds.add(rowId(g, k)); // the coming render shows it
    } else {
      const fresh = entryRow(entry);
      const row = findRow(g, k);
      if (row) { row.replaceWith(fresh); flash(fresh); }
    }
  } else if (!list.conditions.length && (!list.search || (g + "\u0000" + k).toLowerCase().includes(list.search.toLowerCase()))) {
    const entry = { groupId: g, key: k, type: typeOf(change.newValue), value: change.newValue, version: null };
    const after = (e) => e.groupId > g || (e.groupId === g && e.key > k);
    const at = list.rows.findIndex(after);
    if (at === -1 && list.next) {
      showHint();
    } else {
      list.rows.splice(at === -1 ? list.rows.length : at, 0, entry);
      scheduleRender(rowId(g, k));
    }
  } else {
    showHint();
  }
  if (list.selected && list.selected.groupId === g && list.selected.key === k) refreshSelected(change);
}
let hintCount = 0;
function showHint() {
  hintCount += 1;
  const hint = $("#changes-hint");
  $("span", hint).textContent = `${hintCount} change${hintCount === 1 ? "" : "s"} outside what the list shows.`;
  hint.hidden = false;
}

// -- the live stream ---------------------------------------------------------------------

function connectStream() {
  const live = $("#live");
  const source = new EventSource("state/changes");
  source.addEventListener("open", () => { live.textContent = "live"; live.className = "live on"; });
  source.addEventListener("change", (e) => {
    try { applyChange(JSON.parse(e.data)); } catch (err) { console.error(err); }
  });
  source.addEventListener("error", async () => {
    live.className = "live off";
    const r = await api("GET", "state/feed");
    if (r.status === 503) {
      live.textContent = "no live updates: this store has no change feed";
      live.title = r.body ? r.body.error : "";
      source.close();
    } else {
      live.textContent = "reconnecting…";
      if (source.readyState === EventSource.CLOSED) {
        // The server refused to resume where the page stopped (a restarted server no longer has
        // that cursor), and a browser does not retry a refusal: start again from now, and reload
        // the list, which may have missed changes meanwhile.
        setTimeout(() => { connectStream(); loadList(); }, 1000);
      }
    }
  });
}

// -- one entry ----------------------------------------------------------------------------

const detail = { entry: null, baseVersion: null, baseText: "", editorDeferred: false, history: [], picked: null };

async function selectEntry(g, k) {
  list.selected = { groupId: g, key: k };
  detail.picked = null;
  for (const row of $$("tr.entry")) row.setAttribute("aria-selected", String(row.dataset.id === rowId(g, k)));
  $("#conflict").hidden = true;
  $("#op-result").textContent = "";
  $("#d-save-result").textContent = "";
  $("#d-notice").hidden = true;
  await loadEntry(g, k, true);
  await loadHistory();
}

async function fetchEntry(g, k) {
  const r = await api("GET", "state?" + new URLSearchParams({ groupId: g, key: k }));
  if (!r.ok) return { error: errText(r) };
  return { entry: r.body[0] || null };
}

async function loadEntry(g, k, resetEditor) {
  const { entry, error } = await fetchEntry(g, k);
  $("#detail-empty").hidden = true;
  $("#detail-body").hidden = false;
  $("#d-group").textContent = g;
  $("#d-key").textContent = k;
  if (error) { $("#d-notice").hidden = false; $("#d-notice").textContent = error; return; }
  detail.entry = entry || { groupId: g, key: k, type: "missing", value: null, version: null };
  const e = detail.entry;
  $("#d-type").textContent = entry ? e.type : "missing (deleted)";
  $("#d-type").className = "type " + e.type;
  $("#d-version").textContent = e.version || "—";
  renderTree($("#d-tree"), e.value, !!entry);
  if (resetEditor) setEditor(e.value, e.version);
  renderOps();
}

// A large value waits for a click before it fills the editor: a text area of megabytes, or of
// tens of thousands of lines, keeps the page busy for seconds at every selection.
const EDITOR_CHARS = 200000;
function setEditor(value, version) {
  detail.baseVersion = version;
  detail.baseText = pretty(value);
  detail.editorDeferred = detail.baseText.length > EDITOR_CHARS;
  const ed = $("#d-editor");
  ed.hidden = detail.editorDeferred;
  ed.value = detail.editorDeferred ? "" : detail.baseText;
  const load = $("#d-editor-load");
  load.hidden = !detail.editorDeferred;
  load.textContent = `Load it into the editor (${detail.baseText.length.toLocaleString("en-US")} characters)`;
  editorChanged();
}
function loadEditor() {
  detail.editorDeferred = false;
  $("#d-editor-load").hidden = true;
  const ed = $("#d-editor");
  ed.hidden = false;
  ed.value = detail.baseText;
  editorChanged();
  ed.focus();
}
// Whether the editor holds an edit that is not saved.
const editorDirty = () => !detail.editorDeferred && $("#d-editor").value !== detail.baseText;

// A burst of changes to the selected entry (a step writing in a loop) reloads it once per
// round trip, not once per change: one reload at a time, and one more after it for whatever
// arrived meanwhile.
let refreshing = null, refreshNext = null;
function refreshSelected(change) {
  refreshNext = change;
  if (!refreshing) {
    refreshing = (async () => {
      while (refreshNext) {
        const next = refreshNext;
        refreshNext = null;
        const still = list.selected && list.selected.groupId === next.group && list.selected.key === next.key;
        if (still) await reloadSelected(next);
      }
    })().finally(() => { refreshing = null; });
  }
  return refreshing;
}
async function reloadSelected(change) {
  const { groupId: g, key: k } = list.selected;
  const dirty = editorDirty();
  await loadEntry(g, k, !dirty);
  if (dirty) {
    $("#d-notice").hidden = false;
    $("#d-notice").textContent = `Changed elsewhere (${change.op}) while you edit: saving will show both versions.`;
  }
  await loadHistory();
}

// The value as a collapsible tree of <details>.
function renderTree(root, value, present) {
  root.textContent = "";
  if (!present) { root.append(el("span", { class: "meta", text: "no entry" })); return; }
  root.append(treeNode(null, value, 0));
}
// The compareAndSwap fields start from the current value, unless it is large: a one-line field
// holding megabytes keeps the page busy for seconds at every selection.
const PREFILL_CHARS = 100000;
function prefill(value) {
  const text = compact(value);
  return text.length <= PREFILL_CHARS ? text : "";
}

// A large value shows in parts: TREE_CHILDREN children of a node at a time ("Show more" for the
// next ones) and the first TREE_TEXT characters of a long string (the editor holds it whole).
// Drawn whole, a long array or string keeps the page busy for seconds.
const TREE_CHILDREN = 200, TREE_TEXT = 2000;
function treeNode(name, value, depth) {
  const label = name === null ? [] : [el("span", { class: "k", text: JSON.stringify(name) }), ": "];
  const t = typeOf(value);
  if (t === "object" || t === "array") {
    const keys = t === "array" ? value.map((_, i) => i) : Object.keys(value);
    const summary = el("summary", {}, ...label,
      el("span", { class: "meta", text: t === "array" ? `[${keys.length} item${keys.length === 1 ? "" : "s"}]` : `{${keys.length} field${keys.length === 1 ? "" : "s"}}` }));
    const node = el("details", { open: depth < 2 }, summary);
    const more = (from) => {
      for (const key of keys.slice(from, from + TREE_CHILDREN)) node.append(treeNode(key, value[key], depth + 1));
      const left = keys.length - from - TREE_CHILDREN;
      if (left > 0) {
        const button = el("button", { type: "button", class: "more", text: `Show ${Math.min(left, TREE_CHILDREN)} more (${left} not shown)`,
          onclick: () => { button.remove(); more(from + TREE_CHILDREN); } });
        node.append(button);
      }
    };
    more(0);
    return node;
  }
  const cls = { string: "s", number: "n", boolean: "b", null: "z" }[t];
  const text = JSON.stringify(value);
  const shown = text.length > TREE_TEXT ? [text.slice(0, TREE_TEXT), el("span", { class: "meta", text: ` … ${text.length - TREE_TEXT} more characters (the editor shows them all)` })] : [text];
  return el("div", { class: "leaf" }, ...label, el("span", { class: cls }, ...shown));
}

// -- editing -------------------------------------------------------------------------------

function editorChanged() {
  const ed = $("#d-editor");
  if (detail.editorDeferred) {
    $("#d-editor-status").textContent = "A large value: load it to edit it.";
    $("#d-dirty").hidden = true;
    $("#d-save").disabled = true;
    return;
  }
  let valid = true;
  try { JSON.parse(ed.value); } catch (e) { valid = false; $("#d-editor-status").textContent = "Invalid JSON: " + e.message; }
  if (valid) $("#d-editor-status").textContent = "Valid JSON";
  ed.classList.toggle("invalid", !valid);
  ed.setAttribute("aria-invalid", String(!valid));
  $("#d-dirty").hidden = ed.value === detail.baseText;
  $("#d-save").disabled = !valid || ed.value === detail.baseText;
}

// A set that never overwrites blindly: against the version the value was read at, or, for an
// entry that was missing then, only while it still is (a check and the set in one transaction).
// Answers as a guarded set does: 409 CONFLICT with the current value when the guard failed.
async function guardedSet(g, k, value, version) {
  if (version) return api("POST", "state", { groupId: g, key: k, value, expectedVersion: version });
  const operations = [{ type: "check", key: k, op: "missing" }, { type: "set", key: k, value }];
  const r = await api("POST", "state", { groupId: g, key: k, operation: "transaction", value: { operations } });
  if (!r.ok) return r;
  const t = r.body.result;
  if (t.success) return { ok: true, status: 200, body: { groupId: g, key: k, value: t.results[1], version: null } };
  if (t.code !== "CONFLICT") return { ok: false, status: 400, body: { code: t.code, error: t.error } };
  const now = await fetchEntry(g, k);
  const current = now.entry ? { value: now.entry.value, version: now.entry.version } : null;
  return { ok: false, status: 409, body: { code: "CONFLICT", error: `${k} was created meanwhile`, current } };
}

async function save(version) {
  const e = detail.entry;
  let value;
  try { value = JSON.parse($("#d-editor").value); } catch { return; }
  const r = await guardedSet(e.groupId, e.key, value, version);
  const out = $("#d-save-result");
  if (r.ok) {
    $("#conflict").hidden = true;
    out.className = "ok";
    out.textContent = r.body.version ? "Saved (version " + r.body.version + ")." : "Saved.";
    await loadEntry(e.groupId, e.key, true);
  } else if (r.status === 409 && r.body && "current" in r.body) {
    out.className = "bad";
    out.textContent = "Not saved: conflict.";
    showConflict(r.body.current, value);
  } else {
    out.className = "bad";
    out.textContent = "Not saved: " + errText(r);
  }
}

function showConflict(current, mine) {
  const box = $("#conflict");
  box.hidden = false;
  $("#c-current").textContent = current ? pretty(current.value) : "(deleted)";
  $("#c-version").textContent = current ? current.version : "";
  $("#c-mine").textContent = pretty(mine);
  detail.conflictVersion = current ? current.version : null;
  $("#c-rebase").focus();
}

// -- atomic operations, fitted to the value's type --------------------------------------------

function opField(id, label, placeholder, value = "") {
  return el("label", {}, label, el("input", { id, placeholder, value, autocomplete: "off" }));
}
function opButton(name, label, run) {
  return el("button", { type: "button", "data-op": name, onclick: run, text: label });
}
function jsonInput(id) {
  const input = $("#" + id);
  try { input.classList.remove("invalid"); return { ok: true, value: JSON.parse(input.value) }; }
  catch { input.classList.add("invalid"); $("#op-result").className = "op-result bad"; $("#op-result").textContent = `${input.closest("label").firstChild.textContent}: not valid JSON`; return { ok: false }; }
}

function renderOps() {
  const box = $("#ops");
  // Keep what the person typed when the same entry is shown again (after an operation, or a
  // write from a step while they type), and where they were typing. The compareAndSwap fields
  // follow the current value, unless the person changed what they were filled with (a hand-typed
  // "expected" that followed a step's write would let the swap overwrite that write blindly).
  const same = detail.opsFor === rowId(detail.entry.groupId, detail.entry.key) + detail.entry.type;
  const swap = (i) => ["op-expected", "op-new"].includes(i.id);
  const refill = detail.refillSwap;
  detail.refillSwap = false;
  const filled = (i) => swap(i) && (refill || i.value === detail.opsPrefill);
  const kept = same ? Object.fromEntries($$("input", box).filter((i) => !filled(i)).map((i) => [i.id, i.value])) : {};
  const active = same && box.contains(document.activeElement) ? document.activeElement : null;
  const caret = active && "selectionStart" in active ? [active.selectionStart, active.selectionEnd] : null;
  detail.opsFor = rowId(detail.entry.groupId, detail.entry.key) + detail.entry.type;
  detail.opsPrefill = prefill(detail.entry.value);
  box.textContent = "";
  const t = detail.entry.type;
  const groups = [];
  if (t === "number" || t === "missing" || t === "null") {
    groups.push(el("div", { class: "op-group" },
      opField("op-delta", "Delta", "1", "1"),
      opButton("increment", "Increment", () => numberOp("increment")),
      opButton("decrement", "Decrement", () => numberOp("decrement"))));
  }
  if (t === "array" || t === "missing" || t === "null") {
    groups.push(el("div", { class: "op-group" },
      opField("op-items", "Items (JSON array)", '[1, "two"]', "[]"),
      opButton("push", "Push", () => itemsOp("push")),
      opButton("unshift", "Unshift", () => itemsOp("unshift")),
      opButton("pop", "Pop", () => runOp("pop", {})),
      opButton("shift", "Shift", () => runOp("shift", {}))));
  }
  if (t === "object" || t === "missing" || t === "null") {
    groups.push(el("div", { class: "op-group" },
      opField("op-field", "Field", "name"),
      opField("op-field-value", "Field value (JSON)", '"value"', "null"),
      opButton("setField", "Set field", () => {
        const v = jsonInput("op-field-value");
        if (v.ok) runOp("setField", { field: $("#op-field").value, fieldValue: v.value });
      }),
      opButton("deleteField", "Delete field", () => runOp("deleteField", { field: $("#op-field").value }))));
  }
  groups.push(el("div", { class: "op-group" },
    opField("op-expected", "Expected (JSON)", "", prefill(detail.entry.value)),
    opField("op-new", "New value (JSON)", "", prefill(detail.entry.value)),
    opButton("compareAndSwap", "Compare and swap", () => {
      const a = jsonInput("op-expected"), b = jsonInput("op-new");
      if (a.ok && b.ok) runOp("compareAndSwap", { expected: a.value, newValue: b.value });
    })));
  groups.push(el("div", { class: "op-group" },
    opButton("exists", "Exists?", () => runOp("exists", {})),
    el("button", { type: "button", class: "danger", "data-op": "delete", text: "Delete entry", onclick: () => {
      if (confirm(`Delete ${detail.entry.groupId} / ${detail.entry.key}?`)) runOp("delete", {});
    } })));
  box.append(...groups);
  for (const [id, value] of Object.entries(kept)) { const input = $("#" + id); if (input) input.value = value; }
  const again = !active ? null : active.id ? $("#" + active.id, box)
    : active.dataset.op ? $(`[data-op="${active.dataset.op}"]`, box) : null;
  if (again) {
    again.focus();
    if (caret && "setSelectionRange" in again) { try { again.setSelectionRange(caret[0], caret[1]); } catch { /* not a text field */ } }
  }
}

function numberOp(name) {
  const raw = $("#op-delta").value.trim();
  const delta = raw === "" ? undefined : Number(raw);
  if (raw !== "" && !Number.isFinite(delta)) {
    $("#op-result").className = "op-result bad";
    $("#op-result").textContent = "Delta: not a number";
    return;
  }
  runOp(name, delta === undefined ? {} : { delta });
}
function itemsOp(name) {
  const v = jsonInput("op-items");
  if (!v.ok) return;
  runOp(name, { items: Array.isArray(v.value) ? v.value : [v.value] });
}

async function runOp(operation, value) {
  const e = detail.entry;
  const r = await api("POST", "state", { groupId: e.groupId, key: e.key, operation, value });
  // The entry is shown again first, so the result appears once the screen is settled; after
  // the person's own operation the compareAndSwap fields start again from the current value.
  detail.refillSwap = true;
  await loadEntry(e.groupId, e.key, !editorDirty());
  const out = $("#op-result");
  out.className = r.ok ? "op-result ok" : "op-result bad";
  out.textContent = r.ok ? `${operation} → ${compact(r.body.result)}` : `${operation} failed: ${errText(r)}`;
}

// -- history ----------------------------------------------------------------------------------

async function loadHistory() {
  const e = detail.entry;
  const r = await api("GET", "state/history?" + new URLSearchParams({ groupId: e.groupId, key: e.key, limit: "50" }));
  const ol = $("#timeline");
  // A write from a step redraws the timeline: the change a person picked (and the item they were
  // on) stay picked, its diff against the new current value, so "Restore" stays within reach.
  const focused = ol.contains(document.activeElement) ? detail.history[Number(document.activeElement.dataset.index)] : null;
  ol.textContent = "";
  $("#h-diff-box").hidden = true;
  if (!r.ok) {
    $("#h-error").textContent = r.status === 503 ? "History needs the store's change feed, which is not available here." : errText(r);
    $("#d-last").textContent = "";
    return;
  }
  detail.history = r.body.changes;
  $("#h-error").textContent = detail.history.length ? "" : "No recorded changes (older ones may have left the feed's window).";
  const last = detail.history[0];
  $("#d-last").textContent = last ? `last change: ${when(last.at)} · ${last.op}${last.origin ? " by step " + last.origin.step : ""}` : "";
  detail.history.forEach((change, i) => {
    const item = el("li", { tabindex: "0", role: "option", "aria-selected": "false", "data-index": String(i),
      onclick: () => pickChange(i), onkeydown: (ev) => historyKey(ev, i) },
    el("div", {}, el("strong", { text: change.op }), ` · ${change.event}`, change.origin ? ` · step ${change.origin.step}` : "", change.depth ? ` · depth ${change.depth}` : ""),
    el("div", { class: "when", text: when(change.at) }),
    el("div", { class: "mono", text: preview(change.event === "deleted" ? null : change.newValue) }));
    ol.append(item);
  });
  const same = (a, b) => a && b && a.cursor === b.cursor;
  detail.picked = detail.history.find((c) => same(c, detail.picked)) || null;
  if (detail.picked) showPicked();
  const back = detail.history.findIndex((c) => same(c, focused));
  if (back >= 0) $$("#timeline li")[back].focus();
}
function historyKey(ev, i) {
  const items = $$("#timeline li");
  if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); pickChange(i); }
  else if (ev.key === "ArrowDown" && items[i + 1]) { ev.preventDefault(); items[i + 1].focus(); }
  else if (ev.key === "ArrowUp" && items[i - 1]) { ev.preventDefault(); items[i - 1].focus(); }
}
function restoredValue(change) {
  return change.event === "deleted" ? change.oldValue : change.newValue;
}
function pickChange(i) {
  detail.picked = detail.history[i];
  $("#h-restore-result").textContent = "";
  showPicked();
}
function showPicked() {
  const i = detail.history.indexOf(detail.picked);
  $$("#timeline li").forEach((li, j) => li.setAttribute("aria-selected", String(i === j)));
  const change = detail.picked;
  const target = restoredValue(change);
  $("#h-diff-title").textContent = `This change's value${change.event === "deleted" ? " (before the delete)" : ""} → the current value`;
  renderDiff($("#h-diff"), pretty(target), detail.entry.type === "missing" ? "" : pretty(detail.entry.value));
  $("#h-diff-box").hidden = false;
}

// Line diff: the common first and last lines are set aside, then a longest common subsequence
// of the rest, when its table fits DIFF_CELLS (a table of every line of two large values would
// take the tab's memory); past that the rest shows as removed, then added. Long unchanged runs
// fold to their first and last DIFF_CONTEXT lines.
const DIFF_CELLS = 4000000, DIFF_CONTEXT = 3;
function diffLines(x, y) {
  let head = 0;
  while (head < x.length && head < y.length && x[head] === y[head]) head++;
  let tail = 0;
  while (tail < x.length - head && tail < y.length - head && x[x.length - 1 - tail] === y[y.length - 1 - tail]) tail++;
  const a = x.slice(head, x.length - tail), b = y.slice(head, y.length - tail);
  const out = x.slice(0, head).map((t) => ["same", t]);
  const n = a.length, m = b.length;
  const exact = (n + 1) * (m + 1) <= DIFF_CELLS;
  if (!exact) {
    for (const t of a) out.push(["del", t]);
    for (const t of b) out.push(["add", t]);
  } else {
    const table = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
    for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--)
      table[i][j] = a[i] === b[j] ? table[i + 1][j + 1] + 1 : Math.max(table[i + 1][j], table[i][j + 1]);
    let i = 0, j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && a[i] === b[j]) { out.push(["same", a[i]]); i++; j++; }
      else if (i < n && (j === m || table[i + 1][j] >= table[i][j + 1])) { out.push(["del", a[i]]); i++; }
      else { out.push(["add", b[j]]); j++; }
    }
  }
  for (const t of x.slice(x.length - tail)) out.push(["same", t]);
  return { lines: out, exact };
}
function renderDiff(pre, a, b) {
  const { lines, exact } = diffLines(a.split("\n"), b ? b.split("\n") : []);
  pre.textContent = "";
  const line = (cls, sign, text) => pre.append(el("span", { class: cls, text: sign + " " + text + "\n" }));
  if (a === b) line("muted", "", "(identical to the current value)");
  if (!exact) line("muted", "", "(too large to compare line by line: the differing part shows as removed, then added)");
  for (let i = 0; i < lines.length;) {
    let run = i;
    while (run < lines.length && lines[run][0] === "same") run++;
    if (run - i > 2 * DIFF_CONTEXT + 1) {
      const keepHead = i === 0 ? 0 : DIFF_CONTEXT, keepTail = run === lines.length ? 0 : DIFF_CONTEXT;
      for (let k = i; k < i + keepHead; k++) line("same", " ", lines[k][1]);
      line("muted fold", "", `… ${run - i - keepHead - keepTail} unchanged lines`);
      for (let k = run - keepTail; k < run; k++) line("same", " ", lines[k][1]);
      i = run;
      continue;
    }
    for (; i < run; i++) line("same", " ", lines[i][1]);
    if (i < lines.length) { const [cls, t] = lines[i]; line(cls, cls === "del" ? "-" : "+", t); i++; }
  }
}

async function restore() {
  const e = detail.entry;
  const r = await guardedSet(e.groupId, e.key, restoredValue(detail.picked), e.version);
  const out = $("#h-restore-result");
  out.className = r.ok ? "ok" : "bad";
  out.textContent = r.ok ? "Restored." : r.status === 409 ? "Not restored: the entry changed meanwhile; look again." : "Not restored: " + errText(r);
  await loadEntry(e.groupId, e.key, !editorDirty());
  await loadHistory();
}

// -- transaction and batch builder -----------------------------------------------------------------

const RECORD_FIELDS = {
  get: [], exists: [], delete: [], pop: [], shift: [],
  set: [["value", "Value (JSON)", "json"]],
  increment: [["delta", "Delta", "number"]], decrement: [["delta", "Delta", "number"]],
  compareAndSwap: [["expected", "Expected (JSON)", "json"], ["value", "New value (JSON)", "json"]],
  push: [["items", "Items (JSON array)", "json"]], unshift: [["items", "Items (JSON array)", "json"]],
  setField: [["field", "Field", "text"], ["value", "Value (JSON)", "json"]],
  deleteField: [["field", "Field", "text"]],
  check: [["op", "Operator", "op"], ["value", "Value (JSON)", "json"], ["path", "Path", "text"]],
};
const CHECK_OPS = ["eq", "neq", "gt", "gte", "lt", "lte", "contains", "notContains", "startsWith", "endsWith", "exists", "missing", "isNull", "isNotNull", "type"];
let txCounter = 0;

function addRecord(type = "set") {
  const n = ++txCounter;
  const typeSelect = el("select", { "data-field": "type", "aria-label": "Record type" },
    ...Object.keys(RECORD_FIELDS).map((t) => el("option", { value: t, selected: t === type, text: t })));
  const item = el("li", { "data-record": String(n) },
    el("div", { class: "fields" },
      el("label", {}, "Type", typeSelect),
      el("label", {}, "Key", el("input", { "data-field": "key", autocomplete: "off" })),
      el("span", { class: "extra fields" }),
      el("button", { type: "button", "aria-label": "Move up", title: "Move up", text: "↑", onclick: () => moveRecord(item, -1) }),
      el("button", { type: "button", "aria-label": "Move down", title: "Move down", text: "↓", onclick: () => moveRecord(item, 1) }),
      el("button", { type: "button", class: "danger", "aria-label": "Remove record", title: "Remove", text: "✕", onclick: () => { item.remove(); txChanged(); } })),
    el("div", { class: "res", role: "status" }));
  typeSelect.addEventListener("change", () => recordFields(item));
  $("#tx-rows").append(item);
  recordFields(item);
  txChanged();
  $("[data-field=key]", item).focus();
  return item;
}
function recordFields(item) {
  const type = $("[data-field=type]", item).value;
  const box = $(".extra", item);
  box.textContent = "";
  for (const [name, label, kind] of RECORD_FIELDS[type]) {
    const input = kind === "op"
      ? el("select", { "data-field": name }, ...CHECK_OPS.map((o) => el("option", { value: o, text: o })))
      : el("input", { "data-field": name, "data-kind": kind, autocomplete: "off", placeholder: kind === "number" ? "1" : kind === "json" ? "JSON" : "" });
    box.append(el("label", {}, label, input));
  }
}
function moveRecord(item, by) {
  const sibling = by < 0 ? item.previousElementSibling : item.nextElementSibling;
  if (!sibling) return;
  if (by < 0) sibling.before(item); else sibling.after(item);
  $("button[aria-label='" + (by < 0 ? "Move up" : "Move down") + "']", item).focus();
  txChanged();
}
function txChanged() {
  $("#tx-empty").hidden = $$("#tx-rows li").length > 0;
  for (const li of $$("#tx-rows li")) { li.classList.remove("failed", "passed"); $(".res", li).textContent = ""; }
}
function readRecords() {
  const records = [];
  for (const [index, li] of $$("#tx-rows li").entries()) {
    const record = { type: $("[data-field=type]", li).value, key: $("[data-field=key]", li).value };
    for (const input of $$(".extra [data-field]", li)) {
      const name = input.dataset.field, kind = input.dataset.kind, raw = input.value;
      input.classList.remove("invalid");
      if (raw === "" && kind !== "text") continue;
      if (kind === "json") {
        try { record[name] = JSON.parse(raw); } catch { input.classList.add("invalid"); throw new Error(`record ${index}: ${name} is not valid JSON`); }
      } else if (kind === "number") {
        const v = Number(raw);
        if (!Number.isFinite(v)) { input.classList.add("invalid"); throw new Error(`record ${index}: delta is not a number`); }
        record[name] = v;
      } else if (name === "path" && raw === "") {
        continue;
      } else {
        record[name] = raw;
      }
    }
    records.push(record);
  }
  return records;
}
async function runRecords(operation) {
  const summary = $("#tx-summary");
  const group = $("#tx-group").value.trim();
  txChanged();
  if (!group) { summary.className = "bad"; summary.textContent = "Give the group the records run on."; $("#tx-group").focus(); return; }
  let records;
  try { records = readRecords(); } catch (e) { summary.className = "bad"; summary.textContent = e.message; return; }
  if (!records.length) { summary.className = "bad"; summary.textContent = "Add at least one record."; return; }
  const r = await api("POST", "state", { groupId: group, key: "-", operation, value: { operations: records } });
  const items = $$("#tx-rows li");
  if (!r.ok) { summary.className = "bad"; summary.textContent = `${operation} refused: ${errText(r)}`; return; }
  const result = r.body.result;
  if (operation === "transaction") {
    if (result.success) {
      summary.className = "ok";
      summary.textContent = `Transaction committed: ${records.length} record${records.length === 1 ? "" : "s"}.`;
      result.results.forEach((v, i) => { items[i].classList.add("passed"); $(".res", items[i]).textContent = "→ " + compact(v); });
    } else {
      summary.className = "bad";
      summary.textContent = `Transaction failed at record ${result.failedIndex + 1} (failedIndex ${result.failedIndex}, ${result.code}); nothing was stored.`;
      const failed = items[result.failedIndex];
      if (failed) { failed.classList.add("failed"); $(".res", failed).textContent = `✗ ${result.code}: ${result.error}`; }
    }
  } else {
    let failures = 0;
    result.results.forEach((item, i) => {
      const ok = !item.code;
      if (!ok) failures += 1;
      items[i].classList.add(ok ? "passed" : "failed");
      $(".res", items[i]).textContent = ok ? "→ " + compact(item.value) : `✗ ${item.code}: ${item.error}`;
    });
    summary.className = failures ? "bad" : "ok";
    summary.textContent = `Batch ran: ${records.length - failures} succeeded, ${failures} failed.`;
  }
}

// -- steps and triggers ------------------------------------------------------------------------------

let currentStep = null;
async function loadSteps() {
  const r = await api("GET", "steps");
  const ul = $("#steps");
  ul.textContent = "";
  const steps = r.ok ? r.body : [];
  $("#steps-empty").hidden = steps.length > 0;
  $("#steps-empty").textContent = r.ok ? "No steps: this server shows a store alone (run `motia-state dev` to serve an app)." : errText(r);
  for (const step of steps) {
    const triggers = step.triggers.map((t) => t.type + (t.topic ? " " + t.topic : t.path ? ` ${t.method || ""} ${t.path}` : t.expression ? " " + t.expression : t.key ? " " + t.key : "")).join(", ");
    ul.append(el("li", {},
      el("div", {}, el("strong", { text: step.name }), " ", el("span", { class: "muted", text: `${step.language} · ${step.file}` }),
        el("div", { class: "trig", text: triggers || "no triggers (invoke by hand)" })),
      el("button", { type: "button", "data-step": step.name, text: "Invoke…", onclick: () => openInvoke(step.name) })));
  }
  await loadTriggers();
}
function openInvoke(name) {
  currentStep = name;
  $("#invoke").hidden = false;
  $("#inv-name").textContent = name;
  $("#inv-result").textContent = "";
  $("#inv-data").focus();
}
async function invoke(ev) {
  ev.preventDefault();
  let data;
  try { data = JSON.parse($("#inv-data").value); $("#inv-data").classList.remove("invalid"); }
  catch (e) { $("#inv-data").classList.add("invalid"); $("#inv-result").textContent = "Input: not valid JSON"; return; }
  const body = { data };
  if ($("#inv-trace").value) body.traceId = $("#inv-trace").value;
  $("#inv-run").disabled = true;
  $("#inv-result").textContent = "running…";
  $("#inv-logs").textContent = "";
  const r = await api("POST", `steps/${encodeURIComponent(currentStep)}/invoke`, body);
  $("#inv-run").disabled = false;
  const out = $("#inv-result");
  out.className = r.ok ? "result" : "result bad";
  out.textContent = r.ok ? pretty(r.body.result) : errText(r);
  const logs = (r.body && r.body.logs) || [];
  $("#inv-logs").textContent = logs.length ? logs.map((l) => `${l.level.padEnd(7)} ${l.msg}`).join("\n") : "(no log lines)";
}

let triggersLoad = 0;
async function loadTriggers() {
  const load = ++triggersLoad;
  const r = await api("GET", "triggers");
  if (load !== triggersLoad) return;  // a newer load is under way: only the latest answer is shown
  const box = $("#triggers");
  box.textContent = "";
  const triggers = r.ok ? r.body.triggers : [];
  $("#trig-empty").hidden = triggers.length > 0;
  $("#trig-empty").textContent = r.ok ? "No triggers here." : errText(r);
  for (const t of triggers) {
    const facts = [];
    if ("position" in t) facts.push(`position ${t.position ?? "—"}`);
    if ("behind" in t) facts.push(`${t.behind} behind`);
    if ("oldestPendingAge" in t && t.oldestPendingAge !== null) facts.push(`oldest pending ${Number(t.oldestPendingAge).toFixed(1)}s`);
    if (t.state || t.status) facts.push(String(t.state || t.status));
    // Read from the store (no runner in this process): say who would run a retry.
    if ("runtimes" in t) facts.push(t.runtimes ? `${t.runtimes} runtime(s) running it` : "no runtime runs it: a retry waits for one");
    const dead = t.dead || [];
    const rows = dead.map((d) => el("tr", { "data-dead": d.id },
      el("td", { class: "mono", text: d.id }),
      el("td", { text: deadSubject(d) }),
      el("td", { text: d.error || "" }),
      el("td", { text: String(d.attempts ?? "") + (d.retry ? ` · retry ${d.retry}` : "") }),
      el("td", {},
        el("button", { type: "button", "data-action": "retry", text: "Retry", onclick: () => deadAction(t.name, d.id, "retry") }), " ",
        el("button", { type: "button", class: "danger", "data-action": "drop", text: "Drop", onclick: () => deadAction(t.name, d.id, "drop") }))));
    box.append(el("div", { class: "trigger", "data-trigger": t.name },
      el("h3", {}, t.name, " ", el("span", { class: "type", text: t.kind })),
      el("div", { class: "muted", text: facts.join(" · ") }),
      dead.length
        ? el("table", { class: "dead", "aria-label": `Dead letters of ${t.name}` },
          el("thead", {}, el("tr", {}, el("th", { text: "id" }), el("th", { text: "what" }), el("th", { text: "error" }), el("th", { text: "attempts" }), el("th", { text: "" }))),
          el("tbody", {}, ...rows))
        : el("p", { class: "muted", text: "No dead letters." })));
  }
}
function deadSubject(d) {
  // An event's delivery names its step and topic; a state trigger's, the change it was given.
  if (d.change) return `${d.change.group} / ${d.change.key} (${d.change.op})`;
  return [d.step, d.topic && `topic ${d.topic}`].filter(Boolean).join(" · ");
}
async function deadAction(name, id, action) {
  const path = `triggers/${encodeURIComponent(name)}/dead/${encodeURIComponent(id)}`;
  const out = $("#trig-result");
  out.className = "";
  out.textContent = action === "retry" ? `Retrying ${id}…` : `Dropping ${id}…`;
  const r = action === "retry" ? await api("POST", path + "/retry", {}) : await api("DELETE", path);
  if (!r.ok) { out.className = "bad"; out.textContent = `${action} failed: ${errText(r)}`; }
  else if (action === "retry" && r.body && r.body.gone) { out.className = ""; out.textContent = `Retry of ${id}: ${r.body.why}.`; }
  else if (action === "retry" && r.body && r.body.queued) {
    // Asked through the store: a runtime running the trigger runs it, not this server.
    out.className = "";
    out.textContent = `Retry of ${id} queued, not run yet: ${r.body.why}.`;
  }
  else if (action === "retry") { out.className = r.body.succeeded ? "ok" : "bad"; out.textContent = r.body.succeeded ? `Retried ${id}: it succeeded.` : `Retried ${id}: it failed again${r.body.error ? ": " + r.body.error : ""}.`; }
  else { out.className = "ok"; out.textContent = `Dropped ${id}.`; }
  await loadTriggers();
}

// -- wiring ---------------------------------------------------------------------------------------------

function addCondition() {
  const op = $("#f-op").value;
  const path = $("#f-path").value.trim();
  if (path && !path.startsWith("/")) { $("#filter-error").textContent = "A field path starts with / (e.g. /score), or stays empty for the whole value."; return; }
  const cond = { op, path };
  if (!["exists", "missing", "isNull", "isNotNull"].includes(op)) cond.value = parseLoose($("#f-value").value);
  list.conditions.push(cond);
  renderConditions();
  loadList();
}
function renderConditions() {
  const box = $("#filter-rows");
  box.textContent = "";
  list.conditions.forEach((c, i) => box.append(el("div", { class: "cond" },
    el("span", { text: `${c.path || "(value)"} ${c.op}${"value" in c ? " " + compact(c.value) : ""}` }),
    el("button", { type: "button", "aria-label": `Remove condition ${i + 1}`, text: "✕", onclick: () => { list.conditions.splice(i, 1); renderConditions(); loadList(); } }))));
}

async function createEntry(ev) {
  ev.preventDefault();
  let value;
  try { value = JSON.parse($("#ne-value").value); } catch (e) { $("#ne-error").textContent = "Value: not valid JSON"; return; }
  const g = $("#ne-group").value, k = $("#ne-key").value;
  const r = await guardedSet(g, k, value, null); // a new entry never replaces one that exists
  if (r.status === 409) { $("#ne-error").textContent = `${g} / ${k} already exists: open it to edit it.`; return; }
  if (!r.ok) { $("#ne-error").textContent = errText(r); return; }
  $("#ne-error").textContent = "";
  $("#new-entry").hidden = true;
  $("#new-entry-toggle").setAttribute("aria-expanded", "false");
  await loadList();
  await selectEntry(g, k);
}

function wire() {
  setupTabs();
  let timer = null;
  $("#search").addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => { list.search = $("#search").value.trim(); loadList(); }, 250);
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "/" && !["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName)) { e.preventDefault(); $("#search").focus(); }
  });
  $("#refresh").addEventListener("click", () => loadList());
  $("#changes-reload").addEventListener("click", () => { hintCount = 0; loadList(); });
  $("#more").addEventListener("click", () => loadList(true));
  $("#f-add").addEventListener("click", addCondition);
  $("#f-value").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); addCondition(); } });
  $("#f-clear").addEventListener("click", () => { list.conditions = []; renderConditions(); loadList(); });
  $("#new-entry-toggle").addEventListener("click", () => {
    const form = $("#new-entry");
    form.hidden = !form.hidden;
    $("#new-entry-toggle").setAttribute("aria-expanded", String(!form.hidden));
    if (!form.hidden) $("#ne-group").focus();
  });
  $("#new-entry").addEventListener("submit", createEntry);
  $("#d-editor").addEventListener("input", editorChanged);
  $("#d-editor").addEventListener("keydown", (e) => { if ((e.ctrlKey || e.metaKey) && e.key === "s") { e.preventDefault(); if (!$("#d-save").disabled) save(detail.baseVersion); } });
  $("#d-save").addEventListener("click", () => save(detail.baseVersion));
  $("#d-editor-load").addEventListener("click", loadEditor);
  $("#d-revert").addEventListener("click", () => { $("#d-editor").value = detail.baseText; editorChanged(); $("#conflict").hidden = true; });
  $("#d-format").addEventListener("click", () => { try { $("#d-editor").value = pretty(JSON.parse($("#d-editor").value)); editorChanged(); } catch { /* invalid: the status says so */ } });
  $("#c-rebase").addEventListener("click", () => save(detail.conflictVersion));
  $("#c-take").addEventListener("click", async () => { $("#conflict").hidden = true; await loadEntry(detail.entry.groupId, detail.entry.key, true); });
  $("#h-restore").addEventListener("click", restore);
  $("#tx-add").addEventListener("click", () => addRecord());
  $("#tx-run").addEventListener("click", () => runRecords("transaction"));
  $("#tx-batch").addEventListener("click", () => runRecords("batch"));
  $("#invoke").addEventListener("submit", invoke);
  $("#trig-refresh").addEventListener("click", loadTriggers);
  $("#token-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (await openSession($("#token-input").value)) start();
  });
}

let started = false;
async function start() {
  if (started) return;
  const r = await api("GET", "state?limit=1");
  if (r.status === 401) return; // the prompt is showing
  started = true;
  await loadList();
  connectStream();
}

async function tokenFromFragment() {
  let fragment = location.hash.slice(1);
  try { fragment = decodeURIComponent(fragment); } catch { /* not percent-encoded: taken as it is */ }
  if (fragment && window.MOTIA_TOKEN_NEEDED) {
    history.replaceState(null, "", location.pathname + location.search); // the token leaves the address bar
    await openSession(fragment);
  }
}

async function boot() {
  wire();
  txChanged();
  await tokenFromFragment();
  await start();
  // The printed address opened in a tab that already shows the page changes only its fragment.
  window.addEventListener("hashchange", async () => { await tokenFromFragment(); await start(); });
}
document.addEventListener("DOMContentLoaded", boot);
