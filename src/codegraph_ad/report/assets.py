"""The report's inline stylesheet and script (kept as strings so a wheel needs no data files).

The script works on the table the server side rendered (so the page reads without
JavaScript too): it sorts rows by a column's ``data-value``, filters them by text and
label, and fills the detail view on demand: from the JSON block ``#report-data`` for small
batches, else by loading the chunk ``report_assets/details_NNNN.js`` that holds the image.
"""

CSS = """
:root { --fg:#1d232a; --muted:#5b6570; --line:#d9dee3; --bg:#f6f7f9; --hot:#c62828; --accent:#1565c0; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--fg); background:var(--bg); }
header { background:#fff; border-bottom:1px solid var(--line); padding:14px 24px; }
header h1 { margin:0 0 4px; font-size:20px; }
header p { margin:0; color:var(--muted); }
nav { display:flex; gap:16px; padding:8px 24px; background:#fff; border-bottom:1px solid var(--line); position:sticky; top:0; z-index:5; }
nav a { color:var(--accent); text-decoration:none; }
main { padding:16px 24px 40px; max-width:1400px; }
section { background:#fff; border:1px solid var(--line); border-radius:6px; padding:14px 18px; margin-bottom:18px; }
section h2 { margin:0 0 10px; font-size:17px; }
.cards { display:flex; flex-wrap:wrap; gap:12px; }
.card { border:1px solid var(--line); border-radius:6px; padding:8px 14px; min-width:130px; }
.card b { display:block; font-size:20px; }
.card span { color:var(--muted); font-size:12px; }
table { border-collapse:collapse; }
th, td { padding:4px 8px; border-bottom:1px solid var(--line); text-align:left; vertical-align:middle; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
table.kv td:first-child { color:var(--muted); }
#images-table th[data-sort] { cursor:pointer; user-select:none; white-space:nowrap; }
#images-table th[data-sort]::after { content:" \\2195"; color:#aab; }
#images-table th.sorted-asc::after { content:" \\25B2"; color:var(--fg); }
#images-table th.sorted-desc::after { content:" \\25BC"; color:var(--fg); }
#images-table tbody tr { cursor:pointer; }
#images-table tbody tr:hover { background:#eef4fb; }
#images-table img.thumb { display:block; border-radius:3px; background:#ddd; }
.controls { display:flex; gap:12px; align-items:center; margin-bottom:10px; flex-wrap:wrap; }
.controls input, .controls select { padding:4px 6px; font:inherit; }
.muted { color:var(--muted); }
.label-1 { color:var(--hot); font-weight:600; }
.bar { display:inline-block; height:8px; background:var(--hot); border-radius:2px; vertical-align:middle; margin-left:6px; opacity:.7; }
.graph-wrap svg { max-width:100%; height:auto; border:1px solid var(--line); border-radius:4px; background:#fcfcfd; }
.graph-wrap circle { cursor:pointer; }
.legend span { display:inline-block; margin-right:14px; }
.dot { display:inline-block; width:10px; height:10px; border-radius:50%; margin-right:4px; vertical-align:middle; }
.outlier-row td { background:#fdecea; }
section.repeated-defect { border-left:5px solid var(--hot); }
.group-thumbs { display:flex; flex-wrap:wrap; gap:10px; }
.group-thumb { margin:0; font-size:12px; max-width:160px; }
.group-thumb img { display:block; border-radius:3px; background:#ddd; cursor:pointer; }
.group-thumb figcaption { margin-top:3px; overflow-wrap:anywhere; }
#detail { position:fixed; inset:0; background:rgba(20,24,28,.55); display:flex; align-items:flex-start; justify-content:center; padding:30px; z-index:20; overflow:auto; }
#detail[hidden] { display:none; }
#detail .panel { background:#fff; border-radius:8px; padding:16px 20px; max-width:1400px; width:100%; }
#detail .panel header { padding:0; border:0; display:flex; justify-content:space-between; align-items:center; gap:8px; }
#detail .views { display:flex; flex-wrap:wrap; gap:14px; margin-top:12px; }
#detail figure { margin:0; }
#detail figure img { display:block; min-width:240px; max-width:320px; max-height:320px; height:auto; border:1px solid var(--line); }
#detail figcaption { color:var(--muted); font-size:12px; margin-top:3px; }
button { font:inherit; padding:4px 10px; border:1px solid var(--line); background:#fff; border-radius:4px; cursor:pointer; }
button:hover { background:#eef4fb; }
"""

JS = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var table = document.getElementById("images-table");
  var tbody = table.tBodies[0];
  var rows = Array.prototype.slice.call(tbody.rows);
  var count = document.getElementById("row-count");
  var filterText = document.getElementById("filter-text");
  var filterLabel = document.getElementById("filter-label");
  var sortKey = table.getAttribute("data-sort-key");
  var sortDir = table.getAttribute("data-sort-dir");

  function cellValue(row, key) {
    var cell = row.querySelector('td[data-key="' + key + '"]');
    if (!cell) { return ""; }
    var v = cell.getAttribute("data-value");
    return v === null ? cell.textContent : v;
  }

  function sortBy(key, dir, numeric) {
    rows.sort(function (a, b) {
      var x = cellValue(a, key), y = cellValue(b, key), c;
      if (numeric) {
        var fx = parseFloat(x), fy = parseFloat(y);
        if (isNaN(fx)) { fx = -Infinity; }
        if (isNaN(fy)) { fy = -Infinity; }
        c = fx - fy;
      } else {
        c = x.localeCompare(y);
      }
      if (c === 0) { c = parseInt(a.getAttribute("data-idx"), 10) - parseInt(b.getAttribute("data-idx"), 10); }
      return dir === "asc" ? c : -c;
    });
    var frag = document.createDocumentFragment();
    rows.forEach(function (r) { frag.appendChild(r); });
    tbody.appendChild(frag);
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      th.classList.remove("sorted-asc", "sorted-desc");
      if (th.getAttribute("data-sort") === key) { th.classList.add("sorted-" + dir); }
    });
    sortKey = key; sortDir = dir;
    table.setAttribute("data-sort-key", key);
    table.setAttribute("data-sort-dir", dir);
  }

  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
    var key = th.getAttribute("data-sort");
    if (!key) { return; }
    th.addEventListener("click", function () {
      var numeric = th.getAttribute("data-type") === "num";
      var dir;
      if (key === sortKey) { dir = sortDir === "asc" ? "desc" : "asc"; }
      else { dir = numeric ? "desc" : "asc"; }
      sortBy(key, dir, numeric);
    });
  });

  function applyFilter() {
    var text = filterText.value.trim().toLowerCase();
    var label = filterLabel ? filterLabel.value : "";
    var shown = 0;
    rows.forEach(function (r) {
      var i = parseInt(r.getAttribute("data-idx"), 10);
      var item = data.rows[i];
      var hay = (item.name + " " + (item.defect || "")).toLowerCase();
      var ok = (!text || hay.indexOf(text) >= 0) && (!label || String(item.label) === label);
      r.hidden = !ok;
      if (ok) { shown += 1; }
    });
    count.textContent = shown + " of " + rows.length + " images";
  }
  filterText.addEventListener("input", applyFilter);
  if (filterLabel) { filterLabel.addEventListener("change", applyFilter); }

  var detail = document.getElementById("detail");
  var current = -1;
  function visibleOrder() {
    return rows.filter(function (r) { return !r.hidden; }).map(function (r) {
      return parseInt(r.getAttribute("data-idx"), 10);
    });
  }
  function setText(id, text) { document.getElementById(id).textContent = text; }
  function withViews(i, done) {
    if (data.details) { done(data.details[i]); return; }
    var store = window.CODEGRAPH_DETAILS || {};
    if (store[i]) { done(store[i]); return; }
    var script = document.createElement("script");
    script.src = data.chunk_files[Math.floor(i / data.chunk_size)];
    script.onload = function () { done((window.CODEGRAPH_DETAILS || {})[i] || {}); };
    script.onerror = function () { done(null); };
    document.head.appendChild(script);
  }
  function openDetail(i) {
    current = i;
    withViews(i, function (views) { if (current === i) { render(i, views); } });
  }
  function render(i, views) {
    var item = data.rows[i];
    setText("detail-title", item.name);
    var facts = document.getElementById("detail-facts");
    facts.innerHTML = "";
    item.facts.forEach(function (kv) {
      var tr = document.createElement("tr");
      var k = document.createElement("td"); k.textContent = kv[0];
      var v = document.createElement("td"); v.textContent = kv[1];
      tr.appendChild(k); tr.appendChild(v); facts.appendChild(tr);
    });
    var box = document.getElementById("detail-views");
    box.innerHTML = "";
    if (views === null) {
      box.textContent = "detail views not found: report_assets/ must stay beside report.html";
      views = {};
    }
    data.view_names.forEach(function (pair) {
      var src = views[pair[0]];
      if (!src) { return; }
      var fig = document.createElement("figure");
      var img = document.createElement("img");
      img.src = src; img.alt = pair[1] + " of " + item.name;
      var cap = document.createElement("figcaption"); cap.textContent = pair[1];
      fig.appendChild(img); fig.appendChild(cap); box.appendChild(fig);
    });
    detail.hidden = false;
  }
  function step(delta) {
    var order = visibleOrder();
    var pos = order.indexOf(current);
    if (pos < 0 || order.length === 0) { return; }
    openDetail(order[(pos + delta + order.length) % order.length]);
  }
  function closeDetail() { detail.hidden = true; current = -1; }
  rows.forEach(function (r) {
    r.addEventListener("click", function () { openDetail(parseInt(r.getAttribute("data-idx"), 10)); });
  });
  Array.prototype.forEach.call(document.querySelectorAll("[data-open]"), function (el) {
    el.addEventListener("click", function (ev) { ev.preventDefault(); openDetail(parseInt(el.getAttribute("data-open"), 10)); });
  });
  document.getElementById("detail-close").addEventListener("click", closeDetail);
  document.getElementById("detail-prev").addEventListener("click", function () { step(-1); });
  document.getElementById("detail-next").addEventListener("click", function () { step(1); });
  detail.addEventListener("click", function (ev) { if (ev.target === detail) { closeDetail(); } });
  document.addEventListener("keydown", function (ev) {
    if (detail.hidden) { return; }
    if (ev.key === "Escape") { closeDetail(); }
    else if (ev.key === "ArrowRight") { step(1); }
    else if (ev.key === "ArrowLeft") { step(-1); }
  });
  applyFilter();
})();
"""
