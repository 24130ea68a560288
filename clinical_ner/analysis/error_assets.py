"""The error page's inline style sheet and script (no external asset, font or request: the page opens from disk).

The script filters by run, type and category and searches document ids (also from the address:
`?type=T&cat=C&doc=ID&errors=1&hide=2`, hide taking run numbers as the page shows them). It checks itself on
load: the marked mentions per run, category and side must equal the counts table, else `body[data-selfcheck]`
says which differ; a script error is written into `body[data-jserror]`. The headless-browser test reads both.
"""

from __future__ import annotations

# One colour per outcome; predicted mentions are filled, gold ones underlined, exact matches both.
COLOURS = {
    "exact": ("#2e7d32", "#c8e6c9"),
    "wrong_type": ("#7b1fa2", "#e1bee7"),
    "boundary": ("#e65100", "#ffe0b2"),
    "overlap_wrong_type": ("#ad1457", "#f8bbd0"),
    "spurious": ("#c62828", "#ffcdd2"),
    "missed": ("#1565c0", "#bbdefb"),
    "ignored": ("#757575", "#eeeeee"),
}

_BASE_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header,main{padding:0 16px}
h1{font-size:20px;margin:12px 0 4px}h2{font-size:17px;margin:18px 0 6px}h3{font-size:15px;margin:10px 0 4px}
.privacy{color:#8a4b00;margin:2px 0 8px}
#filters{position:sticky;top:0;z-index:2;background:#fff;border-bottom:1px solid #ddd;padding:6px 16px;
 display:flex;flex-wrap:wrap;gap:12px;align-items:center}
#filters label{white-space:nowrap}
.sums{display:grid;gap:16px;grid-template-columns:repeat(auto-fit,minmax(420px,1fr))}
table{border-collapse:collapse;margin:4px 0 10px;background:#fff}
th,td{border:1px solid #ddd;padding:2px 6px;text-align:right}th:first-child,td:first-child{text-align:left}
td.side{text-align:left;color:#555}tr.total td{font-weight:600}
.ok{color:#2e7d32}.bad{color:#c62828;font-weight:700}
.legend span.m{margin-right:6px}
details.ex{margin:2px 0}details.ex ol{margin:2px 0 8px;padding-left:28px;max-height:360px;overflow:auto}
details.ex li{margin:1px 0}q{quotes:none;color:#444}
article.doc{background:#fff;border:1px solid #ddd;border-radius:4px;margin:10px 0;padding:4px 10px 10px}
.cols{display:grid;gap:12px;grid-template-columns:repeat(auto-fit,minmax(320px,1fr))}
.rh{font-weight:600;color:#444;border-bottom:1px solid #eee;margin-bottom:4px}
.text{white-space:pre-wrap;line-height:1.9}
.note{color:#777;font-style:italic}
.m,.x{border-radius:2px}
.m.s-fn,.x.s-fn{background:none;border-bottom-width:3px;border-bottom-style:solid}
.m.off{background:none!important;border-color:transparent!important}
.m:empty::after{content:"\\2205";font-size:10px}
[hidden]{display:none!important}
"""


def stylesheet() -> str:
    """The page's CSS: the fixed layout plus one rule per category colour."""
    rules = []
    for category, (strong, light) in COLOURS.items():
        rules.append(f".c-{category}{{background:{light};border-color:{strong}}}")
        rules.append(f".m.s-tp.c-{category}{{border-bottom:3px solid {strong}}}")
        rules.append(f".k-{category}{{color:{strong}}}")
    return _BASE_CSS + "\n".join(rules)


SCRIPT = r"""
(function () {
  "use strict";
  var body = document.body;
  window.addEventListener("error", function (e) { body.setAttribute("data-jserror", String(e.message)); });
  var all = function (sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); };
  var byId = function (id) { return document.getElementById(id); };
  var docs = all("article.doc");
  var keys = new Map();  // each run column -> the "category|type" keys of its mentions
  all("article.doc .col").forEach(function (col) {
    var found = new Set();
    all(".m:not(.mc)", col).forEach(function (m) { found.add(m.dataset.c + "|" + m.dataset.t); });
    keys.set(col, found);
  });

  function selfcheck() {
    var seen = {};
    all("article.doc .col").forEach(function (col) {
      all(".m:not(.mc)", col).forEach(function (m) {
        var side = m.classList.contains("s-tp") ? "tp" : m.classList.contains("s-fp") ? "fp" : "fn";
        var key = col.dataset.run + "/" + m.dataset.c + "/" + side;
        seen[key] = (seen[key] || 0) + 1;
      });
    });
    var wrong = [];
    all("td[data-n]").forEach(function (td) {
      if (td.dataset.t) { return; }
      var key = td.dataset.r + "/" + td.dataset.c + "/" + td.dataset.s;
      if ((seen[key] || 0) !== Number(td.dataset.n)) { wrong.push(key + " " + (seen[key] || 0) + "!=" + td.dataset.n); }
    });
    body.setAttribute("data-selfcheck", wrong.length ? "mismatch: " + wrong.join(", ") : "ok");
  }

  function value(id) { var el = byId(id); return el ? el.value : ""; }

  function apply() {
    var type = value("f-type"), cat = value("f-cat"), query = value("f-doc").trim().toLowerCase();
    var errorsOnly = byId("f-errors").checked;
    var hiddenRuns = new Set(all("input.runbox").filter(function (b) { return !b.checked; })
      .map(function (b) { return b.dataset.run; }));
    all("[data-run]:not(input)").forEach(function (el) { el.hidden = hiddenRuns.has(el.dataset.run); });
    all("article.doc .m").forEach(function (m) {
      m.classList.toggle("off", (type !== "" && m.dataset.t !== type) || (cat !== "" && m.dataset.c !== cat));
    });
    all("details.ex").forEach(function (d) {
      d.hidden = hiddenRuns.has(d.dataset.run) || (cat !== "" && d.dataset.c !== cat);
    });
    all("details.ex li").forEach(function (li) { li.hidden = type !== "" && li.dataset.t !== type; });
    var shown = 0;
    docs.forEach(function (doc) {
      var visible = query === "" || doc.dataset.doc.toLowerCase().indexOf(query) >= 0;
      if (visible && (type !== "" || cat !== "" || errorsOnly)) {
        visible = all(".col", doc).some(function (col) {
          if (hiddenRuns.has(col.dataset.run)) { return false; }
          return Array.from(keys.get(col)).some(function (key) {
            var parts = key.split("|");
            return (cat === "" ? (!errorsOnly || (parts[0] !== "exact" && parts[0] !== "ignored")) : parts[0] === cat) &&
              (type === "" || parts[1] === type);
          });
        });
      }
      doc.hidden = !visible;
      if (visible) { shown += 1; }
    });
    byId("f-shown").textContent = shown + " of " + docs.length + " documents";
  }

  all("#filters select, #filters input").forEach(function (el) {
    el.addEventListener(el.tagName === "SELECT" || el.type === "checkbox" ? "change" : "input", apply);
  });
  // a count links to its examples: it also sets the category (and type) filters
  all("a[data-go-c]").forEach(function (a) {
    a.addEventListener("click", function () {
      byId("f-cat").value = a.dataset.goC;
      byId("f-type").value = a.dataset.goT || "";
      apply();
    });
  });
  function reveal() {
    var target = location.hash ? byId(location.hash.slice(1)) : null;
    if (target && target.tagName === "DETAILS") { target.hidden = false; target.open = true; }
    if (target && target.hidden) { target.hidden = false; }
  }
  // filters can come with the address too: page.html?type=PROTEINAS&cat=missed&doc=S0004&errors=1&hide=1
  function fromAddress() {
    var query = new URLSearchParams(location.search);
    if (query.has("type")) { byId("f-type").value = query.get("type"); }
    if (query.has("cat")) { byId("f-cat").value = query.get("cat"); }
    if (query.has("doc")) { byId("f-doc").value = query.get("doc"); }
    byId("f-errors").checked = query.get("errors") === "1";
    var hidden = (query.get("hide") || "").split(",");
    all("input.runbox").forEach(function (b) {  // runs numbered as on the page, from 1
      b.checked = hidden.indexOf(String(Number(b.dataset.run) + 1)) < 0;
    });
  }
  window.addEventListener("hashchange", reveal);
  selfcheck();
  fromAddress();
  apply();
  reveal();
})();
"""
