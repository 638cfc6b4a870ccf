"use strict";
// dicomgate operator console: hash-routed pages over the read-only JSON API, polled while
// visible; actions POST with the operator token. Data only ever reaches the page as text.
(function () {
  const API = "api/";
  const S = {
    lang: localStorage.getItem("dg.lang") || null,
    session: null, page: null, timer: null, detailId: null,
    operator: sessionStorage.getItem("dg.operator") || "",
    token: sessionStorage.getItem("dg.token") || "",
    tz: "Asia/Shanghai",
  };

  // -- helpers ----------------------------------------------------------------------------
  function t(key, vars) {
    const dict = I18N[S.lang] || I18N.zh;
    let s = dict[key] !== undefined ? dict[key] : (I18N.zh[key] !== undefined ? I18N.zh[key] : key);
    for (const k in vars || {}) s = s.split("{" + k + "}").join(String(vars[k]));
    return s;
  }
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }
  const $ = (id) => document.getElementById(id);
  function fill(el, ...kids) { el.replaceChildren(...kids.flat(Infinity).filter((k) => k !== null && k !== undefined)); }
  function when(ts) {
    if (!ts) return "-";
    const d = new Date(ts * 1000);
    return new Intl.DateTimeFormat(S.lang === "en" ? "en-GB" : "zh-CN", {
      timeZone: S.tz, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
    }).format(d).replace(",", "");
  }
  function examTime(iso) { return iso ? iso.replace("T", " ").slice(0, 16) : "-"; }
  function bytes(n) {
    if (n === null || n === undefined) return "-";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  }
  function age(sec) {
    if (sec === null || sec === undefined) return "-";
    if (sec >= 86400) return t("age.d", { n: (sec / 86400).toFixed(1) });
    if (sec >= 3600) return t("age.h", { n: (sec / 3600).toFixed(1) });
    if (sec >= 60) return t("age.min", { n: Math.round(sec / 60) });
    return t("age.s", { n: Math.round(sec) });
  }
  function dot(ok) { return h("span", { class: "dot " + (ok === true ? "ok" : ok === false ? "bad" : "unknown") }); }
  function stagePill(stage) { return h("span", { class: "pill s-" + stage, "data-stage": stage }, t("stage." + stage)); }
  function table(el, cols, rows, emptyText) {
    const head = h("tr", {}, cols.map((c) => h("th", { class: c.cls || null }, t(c.label))));
    const body = rows.length ? rows.map((r) => h("tr", r._attrs || {},
      cols.map((c) => { const v = c.cell(r);
        return h("td", { class: c.cls || null, title: typeof v === "string" && (c.cls || "").includes("ellipsis") ? v : null }, v); })))
      : [h("tr", {}, h("td", { colspan: cols.length, class: "muted" }, emptyText || t("p.none")))];
    fill(el, h("thead", {}, head), h("tbody", {}, body));
  }

  async function get(path) {
    const headers = S.token ? { Authorization: "Bearer " + S.token } : {};
    const r = await fetch(API + path, { headers, cache: "no-store" });
    const body = await r.json().catch(() => ({ error: r.statusText }));
    if (!r.ok) throw new Error(body.error || r.statusText);
    return body;
  }
  async function act(name, body, what) {
    if (!window.confirm(t("confirm", { what }))) return;
    const headers = { "Content-Type": "application/json", "X-Console": "1",
      "X-Operator": encodeURIComponent(S.operator) };
    if (S.token) headers.Authorization = "Bearer " + S.token;
    let msg, ok;
    try {
      const r = await fetch(API + "actions/" + name, { method: "POST", headers, body: JSON.stringify(body) });
      const data = await r.json().catch(() => ({ error: r.statusText }));
      ok = r.ok && data.ok; msg = data.message || data.error || r.statusText;
    } catch (e) { ok = false; msg = String(e); }
    notice(t(ok ? "done" : "failed", { msg }), ok);
    refresh();
  }
  function notice(text, ok) {
    const n = $("notice");
    n.textContent = text; n.className = "banner " + (ok ? "ok" : "bad"); n.hidden = false;
    n.setAttribute("data-test", "notice");
    clearTimeout(notice.timer);
    notice.timer = setTimeout(() => { n.hidden = true; }, 8000);
  }
  function canAct(name) { return S.session && S.session.can_act && S.session.actions.includes(name); }
  function button(label, onclick, testId) {
    return h("button", { type: "button", class: "act", onclick, "data-test": testId }, t(label));
  }

  // -- pages ------------------------------------------------------------------------------
  const pages = {
    async overview() {
      const d = await get("overview");
      $("hospital").textContent = d.hospital_id + " · v" + d.version;
      $("hospital").title = "Python " + d.build.python + " · " + d.build.platform + " · schema " + d.build.schema;
      fill($("peers"), d.peers.map((p) => h("div", { class: "card peer", "data-test": "peer-" + p.name,
        "data-ok": String(p.ok) },
        h("h3", {}, dot(p.ok), " ", t("peer." + p.name)),
        h("div", { class: "state " + (p.ok === true ? "ok" : p.ok === false ? "bad" : "") },
          t(p.ok === true ? "peer.ok" : p.ok === false ? "peer.down" : "peer.unknown")),
        h("div", { class: "muted small ellipsis", title: p.target }, p.target),
        h("div", { class: "muted small" }, t("peer.last", { t: when(p.at) })),
        p.detail ? h("div", { class: "small ellipsis " + (p.ok === false ? "bad" : "muted"), title: p.detail }, p.detail) : null)));
      // today
      $("today-date").textContent = d.today.date;
      $("today-total").textContent = d.today.total;
      const order = ["delivered", "sending", "waiting_report", "waiting_images", "problem", "quarantined", "withdrawn", "deleted"];
      const present = order.filter((s) => d.today.by_stage[s]);
      fill($("today-bar"), present.map((s) => h("span", { class: "seg s-" + s,
        style: null, title: t("stage." + s) + " " + d.today.by_stage[s], "data-w": d.today.by_stage[s] })));
      for (const seg of $("today-bar").children) seg.style.flexGrow = seg.getAttribute("data-w");
      fill($("today-legend"), present.map((s) => h("li", { "data-test": "today-" + s },
        h("span", { class: "sw s-" + s }), t("stage." + s) + " ", h("b", {}, d.today.by_stage[s]))));
      // backlog, problems, disk
      const b = d.backlog;
      kv($("backlog"), [["backlog.instances", b.backlog_instances], ["backlog.bytes", bytes(b.backlog_bytes)],
        ["backlog.studies", b.backlog_studies], ["backlog.oldest", age(b.oldest_age_seconds)],
        ["backlog.spool", b.spool_instances + " / " + bytes(b.spool_bytes)]]);
      const pc = d.problems;
      kv($("problem-counts"), ["dead_tasks", "quarantined_exams", "rejected_rows", "rejected_instances",
        "quarantined_files"].map((k) => ["pc." + k, pc[k], pc[k] ? "bad" : null, "count-" + k]));
      badge(pc.dead_tasks + pc.quarantined_exams + pc.rejected_rows + pc.rejected_instances + pc.quarantined_files);
      const disk = d.disk;
      const used = 1 - disk.free_bytes / disk.total_bytes;
      $("disk-meter").style.width = Math.round(used * 100) + "%";
      $("disk-meter").className = disk.below_floor ? "bad" : used > 0.9 ? "warn" : "";
      kv($("disk"), [["disk.free", bytes(disk.free_bytes), disk.below_floor ? "bad" : null],
        ["disk.total", bytes(disk.total_bytes)], ["disk.floor", bytes(disk.floor_bytes)]]);
      if (disk.below_floor) $("disk").append(h("p", { class: "bad small" }, t("disk.below")));
      // health
      const hs = $("health-status");
      hs.className = "pill " + (d.health.status === "ok" ? "s-delivered" : "s-problem");
      hs.textContent = t("health." + d.health.status);
      hs.setAttribute("data-test", "health-status");
      fill($("health"), Object.entries(d.health.checks).map(([k, v]) =>
        h("tr", {}, h("td", {}, dot(v === "ok"), " ", k), h("td", { class: v === "ok" ? "muted" : "bad" }, v))));
      const w = d.health.workers;
      if (w) $("health").append(h("tr", {}, h("td", {}, dot(w.alive === w.started), " ", t("health.workers")),
        h("td", { class: "muted" }, w.alive + " / " + w.started + " · " + t("health.busy", { n: w.busy }))));
      for (const n of d.health.nodes || []) {  // nodes sharing a PostgreSQL store
        $("health").append(h("tr", { "data-test": "node" }, h("td", {}, dot(n.alive), " node " + n.name + (n.leader ? " ★" : "")),
          h("td", { class: n.alive ? "muted" : "bad" }, (n.ae_title || "") + " · " + n.tasks_done + " tasks · " + new Date(n.last_seen * 1000).toLocaleTimeString())));
      }
      examTable($("today-exams"), d.today.exams, true);
    },

    async exams() {
      const f = new URLSearchParams();
      for (const [id, key] of [["f-accession", "accession"], ["f-from", "from"], ["f-to", "to"], ["f-stage", "stage"]]) {
        if ($(id).value) f.set(key, $(id).value.trim());
      }
      const d = await get("exams?" + f.toString());
      $("exam-count").textContent = t("count", { n: d.exams.length }) + (d.truncated ? " · " + t("count.more", { n: d.exams.length }) : "");
      examTable($("exam-list"), d.exams, !!S.detailId);
      if (S.detailId) await showExam(S.detailId);
    },

    async problems() {
      const d = await get("problems");
      $("readonly-hint").hidden = !!(S.session && S.session.can_act);
      fill($("global-actions"),
        d.dead_tasks.length > 1 && canAct("retry_all_dead") ? button("btn.retry_all",
          () => act("retry_all_dead", {}, t("btn.retry_all") + " (" + d.dead_tasks.length + ")"), "retry-all") : null,
        canAct("reconcile") ? button("btn.reconcile",
          () => act("reconcile", {}, t("btn.reconcile")), "reconcile") : null);
      for (const [id, n] of [["dead-tasks", d.dead_tasks.length], ["q-exams", d.quarantined_exams.length],
        ["rejects", d.rejected_rows.length], ["rejected", d.rejected_instances.length], ["q-files", d.quarantined_files.length],
        ["suspect", d.suspect_instances.length]]) {
        $(id).closest(".card").classList.toggle("empty", !n);  // nothing to do: heading only
      }
      $("n-dead").textContent = d.dead_tasks.length;
      table($("dead-tasks"), [
        { label: "col.id", cell: (r) => r.id },
        { label: "col.kind", cell: (r) => kindName(r.kind) },
        { label: "col.key", cls: "mono ellipsis", cell: (r) => r.accession_no ? r.accession_no : r.key },
        { label: "col.attempts", cell: (r) => r.attempts },
        { label: "col.when", cell: (r) => when(r.finished_at || r.updated_at) },
        { label: "col.error", cls: "wrap bad", cell: (r) => r.last_error },
        { label: "col.advice", cls: "wrap", cell: (r) => t("advice." + r.advice) },
        { label: "col.action", cell: (r) => canAct("retry_task") ? button("btn.retry",
          () => act("retry_task", { task_id: r.id }, t("btn.retry") + " #" + r.id), "retry-" + r.id) : null },
      ], d.dead_tasks.map((r) => ({ ...r, _attrs: { "data-task": r.id } })));
      $("n-qexams").textContent = d.quarantined_exams.length;
      table($("q-exams"), [
        { label: "col.accession", cls: "mono", cell: (r) => r.accession_no },
        { label: "col.time", cell: (r) => examTime(r.exam_time) },
        { label: "col.modality", cell: (r) => r.modality || "-" },
        { label: "col.reason", cls: "wrap bad", cell: (r) => r.reason },
        { label: "col.advice", cls: "wrap", cell: () => t("advice.quarantine") },
        { label: "col.action", cell: (r) => canAct("reread_exam") ? button("btn.reread",
          () => act("reread_exam", { accession_no: r.accession_no }, t("btn.reread") + " " + r.accession_no), "reread-" + r.accession_no) : null },
      ], d.quarantined_exams);
      $("n-rejects").textContent = d.rejected_rows.length;
      table($("rejects"), [
        { label: "col.hospital", cell: (r) => r.hospital_id },
        { label: "col.time", cell: (r) => examTime(r.exam_time) },
        { label: "col.modality", cell: (r) => r.modality || "-" },
        { label: "col.seen", cell: (r) => r.seen },
        { label: "col.reason", cls: "wrap bad", cell: (r) => r.reason },
        { label: "col.advice", cls: "wrap", cell: () => t("advice.reject") },
      ], d.rejected_rows);
      $("n-rejected").textContent = d.rejected_instances.length;
      table($("rejected"), [
        { label: "col.study", cls: "mono ellipsis", cell: (r) => r.study_uid },
        { label: "col.count", cell: (r) => r.n },
        { label: "col.when", cell: (r) => when(r.at) },
        { label: "col.error", cls: "wrap bad", cell: (r) => r.error },
        { label: "col.advice", cls: "wrap", cell: () => t("advice.rejected") },
        { label: "col.action", cell: (r) => canAct("resend_rejected") ? button("btn.resend",
          () => act("resend_rejected", { study_uid: r.study_uid }, t("btn.resend")), null) : null },
      ], d.rejected_instances);
      $("n-qfiles").textContent = d.quarantined_files.length;
      table($("q-files"), [
        { label: "col.file", cls: "mono", cell: (r) => r.file },
        { label: "col.size", cell: (r) => bytes(r.size) },
        { label: "col.when", cell: (r) => when(r.at) },
        { label: "col.reason", cls: "wrap bad", cell: (r) => r.reason },
        { label: "col.detail", cls: "wrap small", cell: (r) => Object.entries(r.context || {}).map(([k, v]) => k + "=" + v).join(" · ") },
        { label: "col.advice", cls: "wrap", cell: () => t("advice.qfile") },
      ], d.quarantined_files);
      $("n-suspect").textContent = d.suspect_instances.length;
      table($("suspect"), [
        { label: "col.study", cls: "mono ellipsis", cell: (r) => r.study_uid },
        { label: "col.sop", cls: "mono ellipsis", cell: (r) => r.sop_uid },
        { label: "col.when", cell: (r) => when(r.at) },
        { label: "col.reason", cls: "wrap bad", cell: (r) => r.reason },
        { label: "col.advice", cls: "wrap", cell: () => t("advice.suspect") },
      ], d.suspect_instances.map((r) => ({ ...r, _attrs: { "data-sop": r.sop_uid } })));
    },

    async audit() {
      const f = new URLSearchParams();
      for (const [id, key] of [["a-action", "action"], ["a-q", "q"], ["a-from", "from"], ["a-to", "to"]]) {
        if ($(id).value) f.set(key, $(id).value.trim());
      }
      const d = await get("audit?" + f.toString());
      const sel = $("a-action"), keep = sel.value;
      fill(sel, h("option", { value: "" }, t("a.all")), d.actions.map((a) => h("option", { value: a }, actionName(a))));
      sel.value = keep;
      $("audit-count").textContent = t("count", { n: d.entries.length });
      table($("audit"), [
        { label: "col.when", cell: (r) => when(r.at) },
        { label: "col.type", cell: (r) => actionName(r.action) },
        { label: "col.actor", cls: "ellipsis", cell: (r) => r.actor },
        { label: "col.subject", cls: "mono ellipsis", cell: (r) => r.subject },
        { label: "col.outcome", cell: (r) => r.outcome },
        { label: "col.detail", cls: "wrap small", cell: (r) => typeof r.detail === "object" && r.detail
          ? Object.entries(r.detail).map(([k, v]) => k + "=" + (typeof v === "object" ? JSON.stringify(v) : v)).join(" · ") : String(r.detail || "") },
      ], d.entries);
    },
  };

  function kindName(k) { const key = "kind." + k; const s = t(key); return s === key ? k : s; }
  function actionName(a) { const k = "action." + a; const s = t(k); return s === k ? a : s; }
  function kv(el, items) {
    fill(el, items.map(([k, v, cls, test]) => [h("dt", {}, t(k)), h("dd", { class: cls || null, "data-test": test || null }, v)]));
  }
  function badge(n) { const b = $("problem-badge"); b.hidden = !n; b.textContent = n; }
  function reportCell(r) {
    if (!r.report_version) return h("span", { class: "muted" }, t("report.none"));
    const pushed = r.pushed_version >= r.report_version;
    return h("span", { class: pushed ? "ok" : "warn" }, t(pushed ? "report.pushed" : "report.pending", { v: r.report_version }));
  }
  function imagesCell(r) {
    const exp = r.expected === null ? "?" : r.expected;
    const cls = r.expected !== null && r.delivered >= r.expected && r.expected > 0 ? "ok" : r.rejected ? "bad" : "";
    return h("span", { class: "mono " + cls }, exp + " / " + r.received + " / " + r.delivered);
  }
  function examTable(el, rows, compact) {
    const cols = [
      { label: "col.accession", cls: "mono", cell: (r) => h("a", { href: "#exam/" + r.id, "data-test": "exam-" + r.accession_no }, r.accession_no) },
      { label: "col.time", cell: (r) => examTime(r.exam_time) },
      { label: "col.modality", cell: (r) => r.modality || "-" },
      compact ? null : { label: "col.item", cls: "ellipsis", cell: (r) => r.item || "-" },
      { label: "col.patient", cell: (r) => r.patient || "-" },
      { label: "col.stage", cell: (r) => stagePill(r.stage) },
      { label: "col.report", cell: reportCell },
      { label: "col.images", cell: imagesCell },
      { label: "col.qr", cell: (r) => r.qr_issued ? h("span", { class: "ok" }, t("qr.yes")) : t("qr.no") },
    ].filter(Boolean);
    table(el, cols, rows.map((r) => ({ ...r, _attrs: { "data-exam": r.accession_no, "data-stage": r.stage,
      class: S.detailId === r.id ? "sel" : null } })));
  }

  async function showExam(id) {
    const box = $("exam-detail");
    let d;
    try { d = await get("exams/" + id); } catch (e) { box.hidden = false; fill(box, h("p", { class: "bad" }, String(e.message))); return; }
    box.hidden = false;
    const section = (title, ...kids) => h("section", {}, h("h4", {}, t(title)), ...kids);
    const list = (cols, rows) => { const tb = h("table", { class: "list small" }); table(tb, cols, rows); return tb; };
    fill(box,
      h("div", { class: "dhead" }, h("h3", {}, t("d.title"), " ", h("span", { class: "mono" }, d.accession_no), " ", stagePill(d.stage)),
        h("button", { type: "button", class: "link", onclick: () => { location.hash = "#exams"; } }, t("d.close"))),
      h("dl", { class: "kv" },
        h("dt", {}, t("d.report")), h("dd", {}, reportCell(d)),
        h("dt", {}, t("d.images")), h("dd", {}, imagesCell(d)),
        h("dt", {}, t("d.qr")), h("dd", {}, d.qr_issued ? t("qr.yes") + " × " + d.qr_count + " · " + when(d.qr_last) : "-"),
        d.reason ? [h("dt", {}, t("d.quarantine")), h("dd", { class: "bad" }, d.reason)] : null,
        d.warnings && d.warnings.length ? [h("dt", {}, t("d.warnings")), h("dd", { class: "warn" }, d.warnings.join("; "))] : null),
      d.state === "quarantined" && canAct("reread_exam") ? button("btn.reread",
        () => act("reread_exam", { accession_no: d.accession_no }, t("btn.reread") + " " + d.accession_no), "detail-reread") : null,
      section("d.versions", list([
        { label: "col.version", cell: (v) => "v" + v.version }, { label: "col.type", cell: (v) => v.source_type },
        { label: "col.when", cell: (v) => when(v.created_at) }, { label: "col.hash", cls: "mono", cell: (v) => v.hash }], d.versions)),
      section("d.tasks", list([
        { label: "col.id", cell: (x) => x.id }, { label: "col.kind", cell: (x) => kindName(x.kind) },
        { label: "col.state", cell: (x) => h("span", { class: x.state === "dead" ? "bad" : x.state === "done" ? "ok" : "" }, x.state) },
        { label: "col.attempts", cell: (x) => x.attempts }, { label: "col.when", cell: (x) => when(x.updated_at) },
        { label: "col.error", cls: "wrap bad", cell: (x) => x.last_error || "" },
        { label: "col.result", cls: "wrap muted", cell: (x) => x.result || "" },
        { label: "col.action", cell: (x) => x.state === "dead" && canAct("retry_task") ? button("btn.retry",
          () => act("retry_task", { task_id: x.id }, t("btn.retry") + " #" + x.id), "detail-retry-" + x.id) : null }], d.tasks)),
      d.sends.length ? section("d.sends", list([
        { label: "col.when", cell: (s) => when(s.at) }, { label: "col.kind", cell: (s) => s.kind },
        { label: "col.outcome", cell: (s) => (s.http_status || "") + " " + s.outcome },
        { label: "col.cloud", cls: "wrap", cell: (s) => s.message }], d.sends)) : null,
      section("d.instances", list([
        { label: "col.series", cls: "mono ellipsis", cell: (i) => (i.series_uid || "").slice(-12) },
        { label: "col.sop", cls: "mono ellipsis", cell: (i) => i.sop_uid },
        { label: "col.ts", cls: "mono ellipsis", cell: (i) => i.transfer_syntax || "" },
        { label: "col.size", cell: (i) => bytes(i.size) },
        { label: "col.state", cell: (i) => h("span", { class: i.delivered_at ? "ok" : i.state === "rejected" ? "bad" : "" }, i.state) },
        { label: "col.error", cls: "wrap bad", cell: (i) => i.error || "" }], d.instances)),
      section("d.record", h("dl", { class: "kv record", "data-test": "record" },
        Object.keys(d.record).sort().map((k) => [h("dt", {}, k), h("dd", {}, d.record[k] === null ? "-" : String(d.record[k]))]))));
    for (const tr of $("exam-list").querySelectorAll("tr[data-exam]")) {
      tr.classList.toggle("sel", tr.getAttribute("data-exam") === d.accession_no);
    }
  }

  // -- frame: routing, polling, language, operator ----------------------------------------
  function route() {
    const hash = location.hash.replace(/^#/, "") || "overview";
    const m = hash.match(/^exam\/(\d+)$/);
    S.detailId = m ? Number(m[1]) : null;
    const page = m ? "exams" : (pages[hash] ? hash : "overview");
    S.page = page;
    for (const sec of document.querySelectorAll(".page")) sec.hidden = sec.id !== "page-" + page;
    for (const a of document.querySelectorAll("#tabs a")) a.classList.toggle("on", a.getAttribute("data-page") === page);
    if (page === "exams" && !S.detailId) $("exam-detail").hidden = true;
    refresh();
  }
  async function refresh() {
    if (!S.page) return;
    try {
      await pages[S.page]();
      $("offline").hidden = true;
      $("updated").textContent = t("updated", { t: when(Date.now() / 1000).slice(-8) });
    } catch (e) {
      $("offline").hidden = false;
      $("offline").textContent = t("offline") + " (" + e.message + ")";
    }
  }
  function schedule() {
    clearInterval(S.timer);
    const every = Math.max(1, (S.session && S.session.refresh) || 5) * 1000;
    // Only the visible page polls, and not at all while the tab is hidden: cheap on the daemon.
    S.timer = setInterval(() => { if (!document.hidden) refresh(); }, every);
  }
  function applyLang() {
    document.documentElement.lang = S.lang === "en" ? "en" : "zh-CN";
    document.title = "dicomgate · " + t("title");
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.getAttribute("data-i18n"));
    $("lang").textContent = t("lang.switch");
    const sel = $("f-stage"), keep = sel.value;
    fill(sel, h("option", { value: "" }, t("stage.all")),
      ["delivered", "sending", "waiting_report", "waiting_images", "problem", "quarantined", "withdrawn", "deleted"]
        .map((s) => h("option", { value: s }, t("stage." + s))));
    sel.value = keep;
    operatorLabel();
  }
  function operatorLabel() {
    const s = S.session;
    const el = $("operator");
    if (s && s.can_act && S.operator) el.textContent = t(s.via === "local" ? "op.local" : "op.token", { name: S.operator });
    else el.textContent = t("op.readonly");
  }
  async function loadSession() {
    S.session = await get("session");
    S.tz = S.session.timezone || S.tz;
    if (!S.lang) S.lang = S.session.language;
    if (S.session.can_act && !S.operator) S.session.can_act = false;  // a name is needed to act
    applyLang();
  }
  function openSignin() {
    if (S.session && S.session.can_act) {  // signed in: sign out
      S.token = ""; S.operator = "";
      sessionStorage.removeItem("dg.token"); sessionStorage.removeItem("dg.operator");
      loadSession().then(refresh);
      return;
    }
    const local = S.session && S.session.local_actions;
    $("signin-token-row").hidden = false;
    document.querySelector("#signin .muted").textContent = t(local ? "signin.hint.local" : "signin.hint");
    $("signin-error").hidden = true;
    $("signin-name").value = S.operator;
    $("signin").showModal();
  }
  async function signin(ev) {
    ev.preventDefault();
    const name = $("signin-name").value.trim(), token = $("signin-token").value.trim();
    if (!name) return;
    S.token = token; S.operator = name;
    await loadSession().catch(() => null);
    if (!S.session || !S.session.can_act) {
      S.token = "";
      $("signin-error").textContent = t("signin.bad"); $("signin-error").hidden = false;
      return;
    }
    sessionStorage.setItem("dg.operator", name);
    if (token) sessionStorage.setItem("dg.token", token);
    $("signin-token").value = "";
    $("signin").close();
    operatorLabel();
    refresh();
  }

  document.addEventListener("DOMContentLoaded", async () => {
    $("lang").addEventListener("click", () => {
      S.lang = S.lang === "en" ? "zh" : "en";
      localStorage.setItem("dg.lang", S.lang);
      applyLang(); refresh();
    });
    $("operator").addEventListener("click", openSignin);
    $("signin-form").addEventListener("submit", signin);
    $("signin-cancel").addEventListener("click", () => $("signin").close());
    $("exam-filters").addEventListener("submit", (ev) => { ev.preventDefault(); if (location.hash !== "#exams") location.hash = "#exams"; else refresh(); });
    $("f-reset").addEventListener("click", () => { $("exam-filters").reset(); refresh(); });
    $("audit-filters").addEventListener("submit", (ev) => { ev.preventDefault(); refresh(); });
    window.addEventListener("hashchange", route);
    document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
    try { await loadSession(); } catch (e) { S.lang = S.lang || "zh"; applyLang(); }
    schedule();
    route();
  });
})();
